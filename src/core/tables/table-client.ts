import { TableClient } from "@azure/data-tables";
import type { TokenCredential } from "@azure/identity";
import { TABLE_RETRY_OPTIONS } from "../azure-retries.js";
import type { AppStorageConfig } from "../config.js";
import { ConfigurationError } from "../errors.js";

const created = new Map<string, Promise<void>>();

/**
 * A client for one table of the app's own storage (connection string locally, managed identity
 * in Azure). The table is created once per process.
 */
export async function openAppTable(
  storage: AppStorageConfig,
  tableName: string,
  credential: () => TokenCredential,
): Promise<TableClient> {
  const options = { retryOptions: TABLE_RETRY_OPTIONS };
  let client: TableClient;
  if (storage.connectionString) {
    client = TableClient.fromConnectionString(storage.connectionString, tableName, {
      ...options,
      allowInsecureConnection: /^(DefaultEndpointsProtocol=http;|.*Endpoint=http:)/i.test(
        storage.connectionString,
      ),
    });
  } else if (storage.tableServiceUri) {
    client = new TableClient(storage.tableServiceUri, tableName, credential(), options);
  } else {
    throw new ConfigurationError("No table storage configured", "AzureWebJobsStorage");
  }
  const key = `${client.url}|${tableName}`;
  let ready = created.get(key);
  if (!ready) {
    ready = client.createTable().catch((error: unknown) => {
      created.delete(key);
      throw error;
    });
    created.set(key, ready);
  }
  await ready;
  return client;
}
