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

/**
 * A basket of SKU lines (order.proto CreateOrderRequest.items,
 * storefront.proto PlaceOrderRequest.items, inventory.proto
 * ReserveRequest.items): 1 to 50 lines, 1 to 1000 units each. Inventory
 * owns the rule; order and the storefront refuse a basket outside it before
 * anything is written or sent.
 */
export const ITEM_LINES = { maxLines: 50, maxQuantity: 1000 } as const;

/** A free-text reason (CancelOrder at the storefront and in order, payment's Refund): at most this many characters. */
export const MAX_REASON_LENGTH = 500;
