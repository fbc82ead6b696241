/**
 * The test payment methods: the table in payment.proto says what each does.
 * There is no real processor behind them. Payment decides each one's outcome
 * (services/payment/src/rules.ts, typed so that a method without an outcome
 * does not compile); order and the storefront refuse any other method before
 * an order exists, so an unknown one never travels into the saga.
 */
export const PAYMENT_METHODS = ["pm_card_visa", "pm_card_mastercard", "pm_card_declined", "pm_card_insufficient_funds", "pm_card_risky"] as const;

export type PaymentMethod = (typeof PAYMENT_METHODS)[number];

export function isPaymentMethod(value: string): value is PaymentMethod {
  return (PAYMENT_METHODS as readonly string[]).includes(value);
}
