-- Shipments, one per confirmed order (src/shipment-state.ts has the rules).
-- The shipment row is the current state, shipment_events its history;
-- both are written in the same transaction.
CREATE TABLE shipments (
  shipment_id        text PRIMARY KEY,
  -- One shipment per order: a second creation for the order collides here.
  order_id           text NOT NULL UNIQUE,
  customer_id        text NOT NULL,
  state              text NOT NULL CHECK (state IN ('PENDING', 'PACKED', 'SHIPPED', 'CANCELLED')),
  -- Sequence of its newest history entry.
  version            int NOT NULL CHECK (version >= 1),
  lines              jsonb NOT NULL,
  tracking_number    text,
  -- A cancellation that arrived after the parcel had left: recorded, not applied.
  cancelled_too_late boolean NOT NULL DEFAULT false,
  -- When the timer moves it on; NULL once it is final.
  next_step_at       timestamptz CHECK ((next_step_at IS NULL) = (state IN ('SHIPPED', 'CANCELLED'))),
  -- The span that created it (W3C traceparent): the timer's later work links to it.
  traceparent        text,
  created_at         timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL
);

CREATE INDEX shipments_due ON shipments (next_step_at) WHERE next_step_at IS NOT NULL;
CREATE INDEX shipments_newest ON shipments (created_at DESC, shipment_id DESC);
CREATE INDEX shipments_by_state ON shipments (state, created_at DESC, shipment_id DESC);

CREATE TABLE shipment_events (
  shipment_id text NOT NULL REFERENCES shipments (shipment_id),
  sequence    int NOT NULL CHECK (sequence >= 1),
  type        text NOT NULL,
  state_after text NOT NULL,
  detail      text NOT NULL,
  occurred_at timestamptz NOT NULL,
  -- The order event that caused it; NULL for the timer's steps.
  event_id    text,
  PRIMARY KEY (shipment_id, sequence)
);

-- The consumer's idempotency record: every order event handled, by its id,
-- written in the same transaction as its effect. A redelivered event (after
-- a crash before the acknowledgement, a NAK, a republication) finds its row
-- and changes nothing.
CREATE TABLE processed_events (
  event_id     text PRIMARY KEY,
  subject      text NOT NULL,
  order_id     text NOT NULL,
  -- created, cancelled, cancel_too_late, cancelled_before_confirmation, unchanged
  outcome      text NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now()
);

-- Messages given up on after FULFILLMENT_MAX_DELIVERIES failed attempts,
-- also published on meshcart.deadletter.fulfillment: an operator's list.
CREATE TABLE dead_letters (
  stream_sequence bigint PRIMARY KEY,
  subject         text NOT NULL,
  event_id        text,
  order_id        text,
  attempts        int NOT NULL,
  reason          text NOT NULL,
  dead_at         timestamptz NOT NULL DEFAULT now()
);
