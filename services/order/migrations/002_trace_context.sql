-- Where a saga's work belongs in the traces. The saga runs apart from the
-- call that started it and may be resumed by another replica or after a
-- restart: the W3C traceparent (and correlation id) of the starting call is
-- kept with the run, so every step continues that call's trace and logs
-- under its x-request-id. orders.traceparent is the placing call's, which
-- a later run (a cancellation, in its own trace) links to.
ALTER TABLE orders ADD COLUMN traceparent text;
ALTER TABLE saga_runs ADD COLUMN traceparent text, ADD COLUMN correlation_id text;
