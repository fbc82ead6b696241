-- The transactional outbox is the event log itself: the events others may
-- act on (the order's final events) are published to NATS JetStream by the
-- outbox relay (src/outbox-relay.ts) from order_events, which every append
-- already writes in its one statement. No second table is written beside
-- the log, so nothing can be committed and never published, or published
-- and never committed. published_at marks what the broker acknowledged;
-- it is delivery metadata, the event itself never changes.
ALTER TABLE order_events ADD COLUMN published_at timestamptz;

-- Only the unpublished events to publish: the relay's queue, empty when it
-- keeps up. Events of orders placed before this migration are published
-- too (the relay works through them once).
CREATE INDEX order_events_unpublished ON order_events (occurred_at)
  WHERE published_at IS NULL AND type IN ('ORDER_CONFIRMED', 'ORDER_CANCELLED', 'ORDER_REJECTED', 'ORDER_FAILED');

-- One relay publishes at a time (a lease, as saga runs have): two would
-- each keep an order's events in order, but publish everything twice.
CREATE TABLE outbox_relay (
  name        text PRIMARY KEY,
  owner       text NOT NULL,
  lease_until timestamptz NOT NULL
);
