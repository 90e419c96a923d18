import { PassThrough, type Readable } from "node:stream";
import type { RequestPolicyFactory } from "@azure/storage-blob";

/** A download its caller's abort signal stopped: named AbortError, so the SDK reads no further. */
class DownloadStoppedError extends Error {
  override readonly name = "AbortError";
}

/**
 * Makes @azure/storage-blob's own re-read of a download cut short work. The SDK reads on from the
 * byte it reached (`maxRetryRequests`), but gives up at once when the body reports `aborted`, and
 * Node's HTTP client does that for every connection closed mid-body (Azure/azure-sdk-for-js#32268).
 * Each streamed body reaches the SDK through a relay that reports a cut as the stream error it is,
 * so the SDK reads on. A body the request's own abort signal stopped ends as an AbortError instead:
 * a stop is never read again.
 */
export const resumableDownloads: RequestPolicyFactory = {
  create: (next) => ({
    async sendRequest(request) {
      const response = await next.sendRequest(request);
      const body = response.readableStreamBody as Readable | undefined;
      if (body) response.readableStreamBody = relay(body, request.abortSignal);
      return response;
    },
  }),
};

function relay(body: Readable, signal: { readonly aborted: boolean } | undefined): Readable {
  const relayed = new PassThrough();
  body.on("error", (error) => {
    const stopped = signal?.aborted
      ? new DownloadStoppedError("The download was stopped", {
          cause: (signal as { reason?: unknown }).reason,
        })
      : undefined;
    relayed.destroy(stopped ?? error);
  });
  // A body the SDK gave up on, or its consumer dropped, lets its connection go.
  relayed.on("close", () => {
    if (!body.readableEnded) body.destroy();
  });
  body.pipe(relayed);
  return relayed;
}
