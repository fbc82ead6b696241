-- Payments and their refunds. v1 and v2 of the service share this database:
-- the unique idempotency keys below are the one place where a retry that
-- lands on the other version finds the first attempt. The CHECK constraints
-- restate the rules of rules.ts so that no code path, present or future, can
-- store money that was taken twice or given back more than once.
CREATE TABLE payments (
  payment_id         text PRIMARY KEY,
  -- Insertion order: the keyset of "newest first" listings. Unlike
  -- created_at it is unique, and it survives a round trip through a page
  -- token without losing microseconds.
  seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  idempotency_key    text NOT NULL UNIQUE,
  order_id           text NOT NULL,
  customer_id        text NOT NULL,
  currency_code      text NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
  -- Whole minor units; the upper bound keeps every amount exact as a
  -- JavaScript number.
  amount_minor       bigint NOT NULL CHECK (amount_minor > 0 AND amount_minor <= 9007199254740991),
  payment_method     text NOT NULL,
  status             text NOT NULL CHECK (status IN ('CAPTURED', 'DECLINED', 'PARTIALLY_REFUNDED', 'REFUNDED')),
  decline_reason     text CHECK (decline_reason IN ('CARD_DECLINED', 'INSUFFICIENT_FUNDS')),
  refunded_minor     bigint NOT NULL DEFAULT 0,
  charged_by_version text NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT refunded_within_amount CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
  -- The status is a function of the outcome and of the refunded sum: a
  -- declined payment took nothing and gives nothing back; a captured one is
  -- CAPTURED, PARTIALLY_REFUNDED or REFUNDED as the refunded sum says.
  CONSTRAINT status_matches_money CHECK (
    CASE status
      WHEN 'DECLINED' THEN decline_reason IS NOT NULL AND refunded_minor = 0
      WHEN 'CAPTURED' THEN decline_reason IS NULL AND refunded_minor = 0
      WHEN 'PARTIALLY_REFUNDED' THEN decline_reason IS NULL AND refunded_minor > 0 AND refunded_minor < amount_minor
      WHEN 'REFUNDED' THEN decline_reason IS NULL AND refunded_minor = amount_minor
    END
  )
);

-- ListPayments: one order's or one customer's payments, newest first.
CREATE INDEX payments_by_order ON payments (order_id, seq DESC);
CREATE INDEX payments_by_customer ON payments (customer_id, seq DESC);

CREATE TABLE refunds (
  refund_id           text PRIMARY KEY,
  seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  idempotency_key     text NOT NULL UNIQUE,
  payment_id          text NOT NULL REFERENCES payments (payment_id),
  amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
  -- What the caller asked for, kept apart from what was given back: a
  -- replay must ask for the same thing, and "everything left" (both NULL)
  -- is a different request from the amount it happened to come to.
  requested_currency  text CHECK (requested_currency ~ '^[A-Z]{3}$'),
  requested_minor     bigint CHECK (requested_minor > 0),
  reason              text NOT NULL DEFAULT '' CHECK (char_length(reason) <= 500),
  refunded_by_version text NOT NULL,
  created_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT requested_amount_whole CHECK ((requested_currency IS NULL) = (requested_minor IS NULL)),
  CONSTRAINT requested_amount_given CHECK (requested_minor IS NULL OR requested_minor = amount_minor)
);

-- A payment's refunds, oldest first.
CREATE INDEX refunds_by_payment ON refunds (payment_id, seq);
