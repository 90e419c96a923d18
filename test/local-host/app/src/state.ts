/** Observations shared between the test app and the tests in the same process. */
export interface TestAppState {
  timerCalls: { name: string; timer: unknown }[];
  attempts: Map<string, number>;
  inFlight: number;
  maxInFlight: number;
}

const KEY = Symbol.for("local-host-test-app.state");
const holder = globalThis as unknown as Record<symbol, TestAppState | undefined>;

export function testAppState(): TestAppState {
  let state = holder[KEY];
  if (!state) {
    state = { timerCalls: [], attempts: new Map(), inFlight: 0, maxInFlight: 0 };
    holder[KEY] = state;
  }
  return state;
}
