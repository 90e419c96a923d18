import azureFunctions, { app } from "@azure/functions";

// Node's ESM loader cannot see HttpResponse as a named export of the CommonJS bundle (the real
// worker has the same limitation), so it comes from the default import.
const { HttpResponse } = azureFunctions;

app.http("hello", {
  methods: ["GET"],
  authLevel: "function",
  route: "hello/{name?}",
  handler: async (request) => {
    const greeting = request.query.get("greeting") ?? "Hello";
    return { body: `${greeting}, ${request.params.name ?? "world"}` };
  },
});

app.http("itemById", {
  methods: ["GET", "PUT", "DELETE"],
  authLevel: "anonymous",
  route: "items/{id:int}",
  handler: async (request) => ({
    jsonBody: { kind: "int", id: Number(request.params.id), method: request.method },
  }),
});

app.http("itemByName", {
  methods: ["GET"],
  authLevel: "anonymous",
  route: "items/{name:alpha}",
  handler: async (request) => ({ jsonBody: { kind: "alpha", name: request.params.name } }),
});

app.http("itemsLiteral", {
  methods: ["GET"],
  authLevel: "anonymous",
  route: "items/special",
  handler: async () => ({ jsonBody: { kind: "literal" } }),
});

app.http("thing", {
  methods: ["GET"],
  authLevel: "anonymous",
  route: "things/{id:guid}",
  handler: async (request) => ({ jsonBody: { id: request.params.id } }),
});

app.http("files", {
  methods: ["GET"],
  authLevel: "anonymous",
  route: "files/{*path}",
  handler: async (request) => ({ jsonBody: { path: request.params.path ?? null } }),
});

app.http("echo", {
  methods: ["POST", "PATCH"],
  authLevel: "anonymous",
  route: "echo",
  handler: async (request) => {
    const body = (await request.json()) as unknown;
    return new HttpResponse({
      status: 201,
      jsonBody: {
        method: request.method,
        header: request.headers.get("x-test"),
        cookie: request.headers.get("cookie"),
        query: Object.fromEntries(request.query.entries()),
        body,
      },
      headers: { "x-echo": "yes" },
      cookies: [{ name: "session", value: "abc", httpOnly: true, path: "/", sameSite: "Lax" }],
    });
  },
});

/** Default route: the function name; default methods. */
app.http("defaultRoute", {
  authLevel: "anonymous",
  handler: async (request) => ({ body: `default ${request.method}` }),
});

app.http("status", {
  methods: ["GET"],
  authLevel: "anonymous",
  route: "status/{code:int:range(200,599)}",
  handler: async (request) => ({ status: Number(request.params.code) }),
});

app.http("throws", {
  methods: ["GET"],
  authLevel: "anonymous",
  route: "throws",
  handler: async () => {
    throw new Error("handler failed on purpose");
  },
});

/** Reads the request body as a stream and reports its size and a checksum. */
app.http("upload", {
  methods: ["POST", "PUT"],
  authLevel: "anonymous",
  route: "upload",
  handler: async (request) => {
    let bytes = 0;
    let sum = 0;
    const reader = request.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.length;
      for (const b of value) sum = (sum + b) % 65521;
    }
    return { jsonBody: { bytes, sum } };
  },
});

/** Streams `size` bytes back in 64 KiB chunks, produced lazily. */
app.http("download", {
  methods: ["GET"],
  authLevel: "anonymous",
  route: "download/{size:int}",
  handler: async (request) => {
    let remaining = Number(request.params.size);
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (remaining <= 0) {
          controller.close();
          return;
        }
        const n = Math.min(remaining, 65536);
        remaining -= n;
        controller.enqueue(new Uint8Array(n).fill(97));
      },
    });
    return { body: stream, headers: { "content-type": "application/octet-stream" } };
  },
});
