// Messages of the node's subject the executor skipped (issue #12): counted in kpx_executor_rejected_deltas_total
// by reason, and carried by the next ack that reaches the controller (AckRequest.rejected_messages, last_rejection).
import type { ExecutorMetrics } from '@kpx/telemetry';
import { RejectReason } from '@kpx/transport';

/** What an ack carries of the rejections since the previous ack that reached the controller. */
export interface RejectionReport {
  readonly rejectedMessages: number;
  readonly lastRejection: string;
}

export class Rejections {
  private count = 0;
  private last = '';

  constructor(private readonly metrics: ExecutorMetrics | undefined) {}

  /**
   * Counts one skipped message. A delta at or below the applied generation is only counted in the metric: after
   * every jump to a snapshot the deltas the jump passed arrive that way, and the controller has nothing to learn.
   */
  add(reason: RejectReason, detail: string): void {
    this.metrics?.rejectedDeltas.inc({ reason });
    if (reason === RejectReason.Old) return;
    this.count++;
    this.last = `${reason}: ${detail}`;
  }

  /** Rejections the controller has not been told of yet. */
  pending(): RejectionReport {
    return { rejectedMessages: this.count, lastRejection: this.last };
  }

  /** An ack carrying `sent` reached the controller. */
  reported(sent: RejectionReport): void {
    this.count = Math.max(0, this.count - sent.rejectedMessages);
    if (this.count === 0) this.last = '';
  }
}
