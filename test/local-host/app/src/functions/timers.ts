import { app } from "@azure/functions";
import { testAppState } from "../state.js";

const record = (name: string) => (timer: unknown) => {
  testAppState().timerCalls.push({ name, timer });
};

app.timer("tick", { schedule: "*/2 * * * * *", handler: record("tick") });

app.timer("startup", { schedule: "0 0 0 1 1 *", runOnStartup: true, handler: record("startup") });

/** Hourly, monitored: a status blob with a past `Next` makes it run past due at start. */
app.timer("hourly", { schedule: "0 0 * * * *", handler: record("hourly") });

/** Schedule from an app setting. */
app.timer("fromSetting", { schedule: "%TEST_TIMER_SCHEDULE%", handler: record("fromSetting") });
