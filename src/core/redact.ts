/** Query parameters that carry credentials on ArcGIS and Azure URLs. */
const SECRET_PARAMS = new Set([
  "token",
  "access_token",
  "refresh_token",
  "client_secret",
  "password",
  "code",
  "code_verifier",
  "sig",
]);

/**
 * Returns the URL with credentials removed, for messages and logs: user info is dropped and
 * secret query parameters are replaced by "***".
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url.replace(
      /([?&](?:token|access_token|refresh_token|client_secret|password|sig)=)[^&#\s]*/gi,
      "$1***",
    );
  }
  parsed.username = "";
  parsed.password = "";
  for (const key of [...parsed.searchParams.keys()]) {
    if (SECRET_PARAMS.has(key.toLowerCase())) parsed.searchParams.set(key, "***");
  }
  return parsed.toString();
}

const CONNECTION_STRING_SECRET = /((?:AccountKey|SharedAccessSignature|SharedAccessKey)=)[^;]+/gi;

/** Removes keys and signatures from an Azure Storage connection string. */
export function redactConnectionString(connectionString: string): string {
  return connectionString.replace(CONNECTION_STRING_SECRET, "$1***");
}
