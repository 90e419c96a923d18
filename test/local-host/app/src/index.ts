import { app } from "@azure/functions";

// Like the product: responses and requests stream.
app.setup({ enableHttpStream: true });
