import { databaseConfig, serviceConfig, text, type Config } from "@meshcart/lib";

/** Every environment variable the payment service reads. */
export const paymentConfig = {
  ...serviceConfig,
  ...databaseConfig,
  POD_NAME: text()
    .optional()
    .describe("Instance name in every response's served_by (the pod name in Kubernetes); host:pid when unset."),
};

export type PaymentConfig = Config<typeof paymentConfig>;
