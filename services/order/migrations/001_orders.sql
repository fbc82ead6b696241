-- Event-sourced orders. order_events is the truth; orders is the read model
-- (CQRS projection) that ListOrders reads, written in the same transaction
-- as every event so it is never behind.
CREATE TABLE orders (
  order_id       text PRIMARY KEY,
  request_id     text NOT NULL UNIQUE,
  -- Canonical form of the request: a replay must ask for the same order.
  request_digest text NOT NULL,
  customer_id    text NOT NULL,
  state          text NOT NULL,
  -- Sequence of the last event folded into this row.
  version        int NOT NULL CHECK (version >= 1),
  payment_method text NOT NULL,
  lines          jsonb NOT NULL,
  currency_code  char(3),
  total_minor    bigint CHECK (total_minor >= 0),
  payment_id     text,
  failure_reason text,
  created_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL
);

CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC, order_id DESC);

CREATE TABLE order_events (
  order_id    text NOT NULL REFERENCES orders (order_id),
  sequence    int NOT NULL CHECK (sequence >= 1),
  type        text NOT NULL,
  state_after text NOT NULL,
  data        jsonb NOT NULL,
  occurred_at timestamptz NOT NULL,
  -- Two writers appending at the same position collide here: the second
  -- one's transaction fails instead of forking the order's history.
  PRIMARY KEY (order_id, sequence)
);

-- One row per saga that is not finished: who drives it, until when. A
-- replica that dies stops renewing its lease and recovery takes over.
CREATE TABLE saga_runs (
  order_id    text PRIMARY KEY REFERENCES orders (order_id),
  owner       text NOT NULL,
  lease_until timestamptz NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX saga_runs_by_lease ON saga_runs (lease_until);
