-- An item's deadline is no longer only its run's start deadline: an item of a started run carries
-- the run's finish deadline. Past its deadline an item is claimed whatever the flow-control limits,
-- so that its run is cancelled then, not when a slot frees up.
ALTER TABLE queue RENAME COLUMN start_deadline TO deadline;
