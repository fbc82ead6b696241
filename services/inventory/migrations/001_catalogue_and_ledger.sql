-- The catalogue and its stock ledger. The CHECK constraints restate the
-- ledger's invariants so that no code path, present or future, can store a
-- state that breaks them: stock is never negative and never oversold.
CREATE TABLE products (
  sku              text PRIMARY KEY,
  name             text NOT NULL,
  description      text NOT NULL DEFAULT '',
  currency_code    char(3) NOT NULL,
  unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
  initial          bigint NOT NULL CHECK (initial >= 0),
  restocked        bigint NOT NULL DEFAULT 0 CHECK (restocked >= 0),
  on_hand          bigint NOT NULL CHECK (on_hand >= 0),
  reserved         bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  sold             bigint NOT NULL DEFAULT 0 CHECK (sold >= 0),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT reserved_within_on_hand CHECK (reserved <= on_hand),
  CONSTRAINT ledger_balances CHECK (initial + restocked = on_hand + sold)
);

CREATE TABLE reservations (
  reservation_id text PRIMARY KEY,
  state          text NOT NULL CHECK (state IN ('HELD', 'COMMITTED', 'RELEASED', 'EXPIRED', 'RETURNED')),
  -- Canonical form of the requested items: a replay with the same id must
  -- ask for exactly the same thing.
  request_digest text NOT NULL,
  currency_code  char(3) NOT NULL,
  total_minor    bigint NOT NULL CHECK (total_minor >= 0),
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The expiry sweeper scans only live holds.
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at) WHERE state = 'HELD';

CREATE TABLE reservation_lines (
  reservation_id   text NOT NULL REFERENCES reservations (reservation_id),
  line_no          int NOT NULL,
  sku              text NOT NULL REFERENCES products (sku),
  quantity         bigint NOT NULL CHECK (quantity > 0),
  unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
  PRIMARY KEY (reservation_id, line_no)
);

CREATE TABLE restocks (
  restock_id text PRIMARY KEY,
  sku        text NOT NULL REFERENCES products (sku),
  quantity   bigint NOT NULL CHECK (quantity > 0),
  created_at timestamptz NOT NULL DEFAULT now()
);
