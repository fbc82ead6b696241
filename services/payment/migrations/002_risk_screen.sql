-- v2's risk screen declines with a reason of its own. v1 and v2 share this
-- table and the same image, so whichever version starts first widens the
-- CHECK for both, and a v1 pod reads a RISK_SCREEN decline (a retry landing
-- on v1 replays it) like any other.
ALTER TABLE payments DROP CONSTRAINT payments_decline_reason_check;
ALTER TABLE payments ADD CONSTRAINT payments_decline_reason_check
  CHECK (decline_reason IN ('CARD_DECLINED', 'INSUFFICIENT_FUNDS', 'RISK_SCREEN'));
