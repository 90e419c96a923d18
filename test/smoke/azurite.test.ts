import { BlobServiceClient } from "@azure/storage-blob";
import { expect, inject, test } from "vitest";

test("the test run has a storage emulator that accepts today's SDK", async () => {
  const { connectionString } = inject("azurite");
  const service = BlobServiceClient.fromConnectionString(connectionString);
  const container = service.getContainerClient("smoke");
  await container.createIfNotExists();
  await container.getBlockBlobClient("hello.txt").upload("hi", 2);
  const names: string[] = [];
  for await (const blob of container.listBlobsFlat()) names.push(blob.name);
  expect(names).toEqual(["hello.txt"]);
});
