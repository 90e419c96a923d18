import { app } from "@azure/functions";

// Large backup files stream through HTTP responses instead of being buffered.
app.setup({ enableHttpStream: true });
