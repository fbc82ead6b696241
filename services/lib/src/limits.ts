/**
 * Limits of the API contracts that more than one service must know: the
 * service that owns the rule enforces it, and a caller that would otherwise
 * start work the owner can only refuse checks it first (the .proto comments
 * state the same).
 */

/**
 * What one Charge may take (payment.proto, ChargeRequest.amount): payment
 * refuses anything else, so the order service has inventory refuse a
 * reservation whose total falls outside before anything is held.
 */
export const CHARGE_AMOUNT = { minMinorUnits: 1, maxMinorUnits: 100_000_000 } as const;
