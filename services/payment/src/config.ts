import { databaseConfig, serviceConfig, type Config } from "@meshcart/lib";

/** Every environment variable the payment service reads. */
export const paymentConfig = {
  ...serviceConfig,
  ...databaseConfig,
};

export type PaymentConfig = Config<typeof paymentConfig>;
