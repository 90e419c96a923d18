import { AppError } from "../errors.js";

/** The features written for a layer differ from what the service counts: never accepted silently. */
export class FeatureCountMismatchError extends AppError {
  constructor(
    readonly layer: string,
    readonly expected: number,
    readonly written: number,
    detail = "",
  ) {
    super(
      `Layer ${layer}: the service counts ${expected} features but ${written} were captured${detail ? `; ${detail}` : ""}`,
      { code: "ERR_FEATURE_COUNT_MISMATCH", status: 502 },
    );
  }
}

/** The service answered a page in a way that would lose or duplicate rows (ids it was not asked for). */
export class FeaturePagingError extends AppError {
  constructor(message: string) {
    super(message, { code: "ERR_FEATURE_PAGING", status: 502 });
  }
}
