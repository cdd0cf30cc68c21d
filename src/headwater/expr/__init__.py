"""CEL expressions with Inngest's semantics: trigger `if`, waits, cancels and keys.

Pure: no I/O, and the clock is read only when the caller does not pass `now`.

    expression = compile_expression("event.data.plan == 'pro' && event.data.amount > 10")
    expression.matches({"event": event})                      # -> bool, never raises
    compile_expression("event.data.customerId").key({"event": event})   # -> str | None

Compile when a function is registered (`compile_expression` raises `ExpressionError`, and
caches by source); evaluate per event. The variables are `event`, `async` and `vars`, each a
JSON-like map; any other name, and any function the environment does not declare, is
rejected at compile time, as Inngest's type checker rejects it.

Engine: the `cel` library (cel-rust). Inngest runs cel-go with a decorator that turns
missing fields into null-like "unknowns" (GO:`pkg/expressions/unknown.go`). This adapter gets
the same answers without touching the source: before each evaluation it builds a view of the
variables holding only the fields the expression names, with null for each that is missing
(`_paths`). That view is also what makes evaluation fast, because the library converts every
Python value it is given at a few microseconds per value.

What matches Inngest (each row has a test in tests/unit/test_expr.py):

    expression (field `x` missing unless said)      result
    event.data.x == null                            true
    event.data.x == 'a'  /  event.data.x != 'a'     false / true
    event.data.x != null                            false
    event.data.a.b.c == null  (`a` missing)         true   (plain CEL: no such key error)
    event.data.a.b == null    (`a` is null)         true   (plain CEL: no such overload)
    event.data.a.b.c > 3      (`a` missing)         no match (an error, as in Inngest)
    event.data.x == async.data.x  (both missing)    false  (two nulls would be equal)
    event.data.n == '1'   (n = 1)                   false, no error: equality across types
    event.data.amount > 100   (amount = 100.5)      true: int and double compare numerically
    1 < 'a'                                         an error, so no match (as in Inngest)
    has(event.data.x) / has(event.data.a.b)         false / false (a missing: no error)
    <error> || true  /  <error> && false            true / false (CEL's commutative logic)
    macros, size(), in, contains, startsWith,       as in CEL
      endsWith, matches, ternary
    lowercase, uppercase, b64decode, json_parse,    as Inngest's overloads.go, including its
      date, now, now_plus, now_minus                fallbacks ('' or {} for a bad argument)
    matches() on a non-bool result or an error      false

Known differences (each pinned by a test):

    * An ordered comparison with null or a missing field is an error here, so it does not
      match. Inngest replaces null with the other side's zero value and orders a missing
      field below everything: `event.data.x < 5` and `5 > event.data.x` are true there.
    * `+` across types is an error here. Inngest concatenates the operands as strings
      (`'a' + 1` is 'a1') and `<missing> + v` is `v`.
    * `||` and `&&` need booleans here. Inngest returns the first truthy operand, JS-style
      (`event.data.a || event.data.b`); here that is an error (matches() false, key() None).
    * `size(<missing>)` is an error here; Inngest returns 0.
    * Two missing fields are equal (null == null) except as a top-level `&&` conjunct of the
      form `PATH == PATH`, the shape of the SDKs' `match`, which is false as in Inngest.
      `<missing> != <missing>` is false here and true in Inngest.
    * JSON integers stay integers; Go decodes every JSON number as a double. Comparisons are
      the same either way. Arithmetic differs: `event.data.count + 1` works here, and
      `type(event.data.count) == int` is true here.
    * A field reached other than by a path of `.field` and `['literal']` steps from a root,
      e.g. after a numeric index (`event.data.items[0].sku`) or through a macro variable, is
      not null-filled: when missing it is an error (no match).
    * When a map is used whole (`size(event.data)`, iteration, `event.data` as a key) and
      the expression also reads a missing field of it, that field is seen as a null entry.
    * Library gaps: `size()` of a string counts UTF-8 bytes, not code points; there is no
      `bool()` conversion, optional syntax (`.?x`), or time-zone argument to the timestamp
      accessors.
    * `date()` parses ISO 8601 (a superset of RFC 3339) and the RFC 1123 / 822 / 850,
      ANSIC, UnixDate and RubyDate layouts, and Unix times (int: s, ms or ns). Go's Stamp
      layouts (no year) give null here, and a zone abbreviation such as MST gets its US
      offset here but offset 0 in Go. `b64decode` of invalid input is '' (Inngest keeps the
      prefix it could decode).
    * No static type checking: an ill-typed call such as `lowercase(1)` compiles and falls
      back at evaluation ('') instead of failing at registration.
    * `key()` rendering is Headwater's: strings as they are (timestamps as ISO 8601,
      durations as seconds with an `s`, bytes as base64), other values as canonical JSON
      (sorted keys, integral floats as integers), so 1 and 1.0 give the same key (and so
      do 1 and '1').
"""

from headwater.expr._expression import Expression, compile_expression
from headwater.expr._policy import match_expression, validate_cancel_expression

__all__ = ["Expression", "compile_expression", "match_expression", "validate_cancel_expression"]
