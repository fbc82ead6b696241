/** Work a service does besides answering calls (e.g. expiring reservations). */
export interface BackgroundTask {
  name: string;
  /**
   * Runs until `signal` aborts; resolves when it has stopped. The signal
   * aborts only after in-flight calls drained, since those calls may be
   * waiting on this work.
   */
  run(signal: AbortSignal): Promise<void>;
}
