import { databaseConfig, faultConfig, serviceConfig, type Config } from "@meshcart/lib";

/** Every environment variable the payment service reads. */
export const paymentConfig = {
  ...serviceConfig,
  ...databaseConfig,
  ...faultConfig,
};

export type PaymentConfig = Config<typeof paymentConfig>;
