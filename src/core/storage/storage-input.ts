import { z } from "zod";
import { containerNameProblem } from "./blob-container.js";

/** Azure's container naming rule as a schema: the same rule the blob client checks. */
export const containerNameSchema = z.string().superRefine((name, context) => {
  const problem = containerNameProblem(name);
  if (problem) context.addIssue({ code: "custom", message: problem });
});

/** The fields of a backup storage target, in an identity and in a storage check alike. */
const storageFields = {
  type: z.literal("azure-blob"),
  container: containerNameSchema,
  connectionString: z.string().min(1).max(4096).optional(),
  accountUrl: z.string().trim().min(1).max(2048).optional(),
};

type Credentials = { connectionString?: string | undefined; accountUrl?: string | undefined };
const hasOneCredential = (s: Credentials) =>
  (s.connectionString === undefined) !== (s.accountUrl === undefined);
const ONE_CREDENTIAL = {
  message: "give exactly one of connectionString or accountUrl",
  path: ["connectionString"],
};

export const storageInputSchema = z.strictObject(storageFields).refine(hasOneCredential, ONE_CREDENTIAL);

/** PATCH: a connection string left out keeps its stored value. */
export const storagePatchSchema = z.strictObject(storageFields);

/** Body of POST /api/storage/check. */
export const storageCheckInputSchema = z
  .strictObject({ ...storageFields, createIfMissing: z.boolean().optional() })
  .refine(hasOneCredential, ONE_CREDENTIAL);
