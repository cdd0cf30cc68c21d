-- A function's runs by creation time: bulk cancellation and (later) the dashboard's run lists.
CREATE INDEX runs_by_function ON runs (function_id, created_at);
