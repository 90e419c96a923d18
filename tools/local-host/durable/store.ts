import { randomUUID } from "node:crypto";
import { odata, TableClient, type TableEntity, type TransactionAction } from "@azure/data-tables";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";

/**
 * Durable state in the app's storage account, through the real SDKs.
 *
 * - `<hub>Instances` (PartitionKey = instance id, RowKey = ""): one row per instance for status
 *   queries and listing. It is a projection written after each commit.
 * - `<hub>History` (PartitionKey = instance id): the source of truth, so that one entity-group
 *   transaction can commit an episode. RowKey `meta` (status, counters), `h<generation>_<row>`
 *   (history records, appended per episode, never rewritten) and `m<seq>` (the inbox: messages
 *   received and not yet processed, group-committed as they arrive).
 *   A record is a JSON array of events, split over consecutive rows of at most 30,000 characters
 *   (the string property limit is 64 KiB of UTF-16); the row ending a record has `e = true`.
 * - Blob container `<hub>-largemessages`: any payload over 60,000 characters, referenced by name.
 */

export interface HistoryEvent {
  EventType: number;
  EventId: number;
  Timestamp: Date;
  IsPlayed: boolean;
  [key: string]: unknown;
}

export type RuntimeStatus =
  | "Pending"
  | "Running"
  | "Completed"
  | "ContinuedAsNew"
  | "Failed"
  | "Terminated"
  | "Suspended";

export const TERMINAL_STATUSES: ReadonlySet<RuntimeStatus> = new Set(["Completed", "Failed", "Terminated"]);

export interface InstanceRecord {
  instanceId: string;
  name: string;
  runtimeStatus: RuntimeStatus;
  createdTime: Date;
  lastUpdatedTime: Date;
  /** JSON text; undefined when absent. */
  input?: string | undefined;
  output?: string | undefined;
  customStatus?: string | undefined;
  parentInstanceId?: string | undefined;
  /** EventId of the SubOrchestrationInstanceCreated event in the parent. */
  parentTaskId?: number | undefined;
  generation: number;
  executionId: string;
}

export interface Meta extends InstanceRecord {
  /** Rows of the current generation's history that are committed. */
  rowCount: number;
  /** Inbox rows with a sequence number up to this one have been processed. */
  inboxConsumed: number;
}

export interface LoadedInstance {
  meta: Meta;
  history: HistoryEvent[];
  /** Unprocessed messages, oldest first. */
  inbox: HistoryEvent[];
  /** Highest inbox row sequence number found. */
  inboxSeq: number;
}

export interface InstanceQuery {
  createdTimeFrom?: Date;
  createdTimeTo?: Date;
  runtimeStatus?: RuntimeStatus[];
  instanceIdPrefix?: string;
}

const MAX_CHARS_PER_ROW = 30_000;
const MAX_INLINE_CHARS = 60_000;
const MAX_BATCH_OPERATIONS = 100;
const MAX_BATCH_CHARS = 1_500_000;
const PAYLOAD_KEYS = ["Input", "Result", "Details", "Reason"] as const;

const pad = (n: number, width: number) => String(n).padStart(width, "0");
const historyRowKey = (generation: number, row: number) => `h${pad(generation, 6)}_${pad(row, 9)}`;
const inboxRowKey = (seq: number) => `m${pad(seq, 10)}`;

/** Splits text into pieces of bounded length without cutting a surrogate pair. */
export function splitText(text: string, size = MAX_CHARS_PER_ROW): string[] {
  const pieces: string[] = [];
  let start = 0;
  while (start < text.length) {
    let end = Math.min(start + size, text.length);
    const code = text.charCodeAt(end - 1);
    if (end < text.length && code >= 0xd800 && code <= 0xdbff) end--;
    pieces.push(text.slice(start, end));
    start = end;
  }
  if (pieces.length === 0) pieces.push("");
  return pieces;
}

export function validateTaskHubName(name: string): void {
  if (!/^[A-Za-z][A-Za-z0-9]{2,44}$/.test(name)) {
    throw new Error(`Task hub name "${name}" must be 3-45 letters and digits, starting with a letter`);
  }
}

export class DurableStore {
  readonly instances: TableClient;
  readonly history: TableClient;
  readonly blobs: ContainerClient;

  constructor(
    connectionString: string,
    readonly taskHub: string,
  ) {
    validateTaskHubName(taskHub);
    const options = { allowInsecureConnection: true };
    this.instances = TableClient.fromConnectionString(connectionString, `${taskHub}Instances`, options);
    this.history = TableClient.fromConnectionString(connectionString, `${taskHub}History`, options);
    this.blobs = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(
      `${taskHub.toLowerCase()}-largemessages`,
    );
  }

  async init(): Promise<void> {
    await Promise.all([
      this.instances.createTable(),
      this.history.createTable(),
      this.blobs.createIfNotExists(),
    ]);
  }

  // ---- payloads -------------------------------------------------------------------------------

  private async offload(instanceId: string, text: string): Promise<string> {
    const name = `${encodeURIComponent(instanceId)}/${randomUUID()}.json`;
    await this.blobs.getBlockBlobClient(name).upload(text, Buffer.byteLength(text));
    return name;
  }

  private async download(name: string): Promise<string> {
    const buffer = await this.blobs.getBlockBlobClient(name).downloadToBuffer();
    return buffer.toString("utf8");
  }

  /** A string property value, or a reference to a blob when it is too large for a property. */
  private async packField(
    entity: Record<string, unknown>,
    key: string,
    instanceId: string,
    value: string | undefined,
  ): Promise<void> {
    if (value === undefined) return;
    if (value.length > MAX_CHARS_PER_ROW) entity[`${key}Ref`] = await this.offload(instanceId, value);
    else entity[key] = value;
  }

  private async unpackField(entity: Record<string, unknown>, key: string): Promise<string | undefined> {
    const ref = entity[`${key}Ref`];
    if (typeof ref === "string") return this.download(ref);
    const value = entity[key];
    return typeof value === "string" ? value : undefined;
  }

  private async encodeEvents(instanceId: string, events: HistoryEvent[]): Promise<string> {
    const out: Record<string, unknown>[] = [];
    for (const event of events) {
      let copy: Record<string, unknown> | undefined;
      for (const key of PAYLOAD_KEYS) {
        const value = event[key];
        if (typeof value === "string" && value.length > MAX_INLINE_CHARS) {
          copy ??= { ...event };
          copy[key] = { $blob: await this.offload(instanceId, value) };
        }
      }
      out.push(copy ?? event);
    }
    return JSON.stringify(out);
  }

  private async decodeEvents(json: string): Promise<HistoryEvent[]> {
    const events = JSON.parse(json) as HistoryEvent[];
    for (const event of events) {
      event.Timestamp = new Date(event.Timestamp as unknown as string);
      for (const key of PAYLOAD_KEYS) {
        const value = event[key] as { $blob?: string } | undefined;
        if (value && typeof value === "object" && typeof value.$blob === "string") {
          event[key] = await this.download(value.$blob);
        }
      }
    }
    return events;
  }

  // ---- rows -----------------------------------------------------------------------------------

  private async recordRows(
    instanceId: string,
    events: HistoryEvent[],
    rowKey: (index: number) => string,
    firstIndex: number,
  ): Promise<TableEntity[]> {
    const pieces = splitText(await this.encodeEvents(instanceId, events));
    return pieces.map((d, i) => ({
      partitionKey: instanceId,
      rowKey: rowKey(firstIndex + i),
      d,
      e: i === pieces.length - 1,
    }));
  }

  private async metaEntity(meta: Meta): Promise<TableEntity> {
    const entity: Record<string, unknown> = {
      partitionKey: meta.instanceId,
      rowKey: "meta",
      ...this.statusProperties(meta),
      rowCount: meta.rowCount,
      inboxConsumed: meta.inboxConsumed,
    };
    await this.packField(entity, "input", meta.instanceId, meta.input);
    await this.packField(entity, "output", meta.instanceId, meta.output);
    await this.packField(entity, "customStatus", meta.instanceId, meta.customStatus);
    return entity as TableEntity;
  }

  private statusProperties(record: InstanceRecord): Record<string, unknown> {
    const props: Record<string, unknown> = {
      name: record.name,
      runtimeStatus: record.runtimeStatus,
      createdTime: record.createdTime,
      lastUpdatedTime: record.lastUpdatedTime,
      generation: record.generation,
      executionId: record.executionId,
    };
    if (record.parentInstanceId !== undefined) props.parentInstanceId = record.parentInstanceId;
    if (record.parentTaskId !== undefined) props.parentTaskId = record.parentTaskId;
    return props;
  }

  private async submit(partitionKey: string, actions: TransactionAction[]): Promise<void> {
    let batch: TransactionAction[] = [];
    let chars = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      if (batch.length === 1) {
        const [kind, entity] = batch[0]! as [string, TableEntity];
        if (kind === "delete")
          await this.history.deleteEntity(entity.partitionKey, entity.rowKey).catch(ignore404);
        else await this.history.upsertEntity(entity, "Replace");
      } else {
        await this.history.submitTransaction(batch);
      }
      batch = [];
      chars = 0;
    };
    for (const action of actions) {
      const entity = action[1] as TableEntity & { d?: string };
      const size = (entity.d?.length ?? 0) + 500;
      if (batch.length >= MAX_BATCH_OPERATIONS || (batch.length > 0 && chars + size > MAX_BATCH_CHARS))
        await flush();
      batch.push(action);
      chars += size;
    }
    await flush();
    void partitionKey;
  }

  // ---- writes ---------------------------------------------------------------------------------

  /** Creates (or overwrites) an instance: projection row, meta and the first inbox message. */
  async createInstance(meta: Meta, firstMessages: HistoryEvent[]): Promise<number> {
    await this.writeProjection(meta);
    const rows = await this.recordRows(meta.instanceId, firstMessages, inboxRowKey, meta.inboxConsumed + 1);
    await this.submit(meta.instanceId, [
      ...rows.map((r): TransactionAction => ["upsert", r, "Replace"]),
      ["upsert", await this.metaEntity(meta), "Replace"],
    ]);
    return meta.inboxConsumed + rows.length;
  }

  /** Appends inbox rows holding `messages`; returns the last sequence number used. */
  async appendInbox(instanceId: string, lastSeq: number, messages: HistoryEvent[]): Promise<number> {
    const rows = await this.recordRows(instanceId, messages, inboxRowKey, lastSeq + 1);
    await this.submit(
      instanceId,
      rows.map((r): TransactionAction => ["upsert", r, "Replace"]),
    );
    return lastSeq + rows.length;
  }

  /**
   * Commits an episode: appends the new history record after the committed rows, then writes
   * meta (which makes the rows and the inbox consumption visible) in the last transaction.
   * Returns the new row count. Consumed inbox rows are deleted afterwards, best effort.
   */
  async commit(meta: Meta, newEvents: HistoryEvent[], consumedFrom: number): Promise<void> {
    const actions: TransactionAction[] = [];
    if (newEvents.length > 0) {
      const rows = await this.recordRows(
        meta.instanceId,
        newEvents,
        (i) => historyRowKey(meta.generation, i),
        meta.rowCount,
      );
      for (const row of rows) actions.push(["upsert", row, "Replace"]);
      meta.rowCount += rows.length;
    }
    actions.push(["upsert", await this.metaEntity(meta), "Replace"]);
    await this.submit(meta.instanceId, actions);
    if (meta.inboxConsumed >= consumedFrom) {
      const deletes: TransactionAction[] = [];
      for (let seq = consumedFrom; seq <= meta.inboxConsumed; seq++) {
        deletes.push(["delete", { partitionKey: meta.instanceId, rowKey: inboxRowKey(seq) }]);
      }
      this.submit(meta.instanceId, deletes).catch(() => {});
    }
  }

  async writeProjection(record: InstanceRecord): Promise<void> {
    const entity: Record<string, unknown> = {
      partitionKey: record.instanceId,
      rowKey: "",
      ...this.statusProperties(record),
    };
    await this.packField(entity, "input", record.instanceId, record.input);
    await this.packField(entity, "output", record.instanceId, record.output);
    await this.packField(entity, "customStatus", record.instanceId, record.customStatus);
    await this.instances.upsertEntity(entity as TableEntity, "Replace");
  }

  /** Deletes every row of older generations (after continue-as-new), best effort. */
  async deleteGenerationsBefore(instanceId: string, generation: number): Promise<void> {
    const deletes: TransactionAction[] = [];
    const filter = odata`PartitionKey eq ${instanceId} and RowKey ge 'h' and RowKey lt ${historyRowKey(generation, 0)}`;
    for await (const row of this.history.listEntities({ queryOptions: { filter, select: ["RowKey"] } })) {
      deletes.push(["delete", { partitionKey: instanceId, rowKey: row.rowKey! }]);
    }
    await this.submit(instanceId, deletes);
  }

  // ---- reads ----------------------------------------------------------------------------------

  async readRecord(instanceId: string): Promise<InstanceRecord | undefined> {
    try {
      const entity = await this.instances.getEntity<Record<string, unknown>>(instanceId, "");
      return this.toRecord(entity);
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw error;
    }
  }

  private async toRecord(entity: Record<string, unknown>): Promise<InstanceRecord> {
    const record: InstanceRecord = {
      instanceId: entity.partitionKey as string,
      name: entity.name as string,
      runtimeStatus: entity.runtimeStatus as RuntimeStatus,
      createdTime: new Date(entity.createdTime as string | Date),
      lastUpdatedTime: new Date(entity.lastUpdatedTime as string | Date),
      input: await this.unpackField(entity, "input"),
      output: await this.unpackField(entity, "output"),
      customStatus: await this.unpackField(entity, "customStatus"),
      generation: Number(entity.generation ?? 0),
      executionId: (entity.executionId as string) ?? "",
    };
    if (typeof entity.parentInstanceId === "string") record.parentInstanceId = entity.parentInstanceId;
    if (entity.parentTaskId !== undefined) record.parentTaskId = Number(entity.parentTaskId);
    return record;
  }

  async queryRecords(query: InstanceQuery): Promise<InstanceRecord[]> {
    const clauses: string[] = [];
    if (query.createdTimeFrom) clauses.push(odata`createdTime ge ${query.createdTimeFrom}`);
    if (query.createdTimeTo) clauses.push(odata`createdTime le ${query.createdTimeTo}`);
    if (query.runtimeStatus && query.runtimeStatus.length > 0) {
      clauses.push(`(${query.runtimeStatus.map((s) => odata`runtimeStatus eq ${s}`).join(" or ")})`);
    }
    if (query.instanceIdPrefix) {
      const prefix = query.instanceIdPrefix;
      const upper = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
      clauses.push(odata`PartitionKey ge ${prefix} and PartitionKey lt ${upper}`);
    }
    const filter = clauses.length > 0 ? clauses.join(" and ") : undefined;
    const records: InstanceRecord[] = [];
    const options = filter ? { queryOptions: { filter } } : {};
    for await (const entity of this.instances.listEntities<Record<string, unknown>>(options)) {
      records.push(await this.toRecord(entity));
    }
    return records;
  }

  /** Everything needed to resume an instance; undefined when there is no meta row. */
  async load(instanceId: string): Promise<LoadedInstance | undefined> {
    let metaEntity: Record<string, unknown> | undefined;
    const historyRows: Record<string, unknown>[] = [];
    const inboxRows: Record<string, unknown>[] = [];
    const filter = odata`PartitionKey eq ${instanceId}`;
    for await (const row of this.history.listEntities<Record<string, unknown>>({
      queryOptions: { filter },
    })) {
      const key = row.rowKey as string;
      if (key === "meta") metaEntity = row;
      else if (key.startsWith("h")) historyRows.push(row);
      else if (key.startsWith("m")) inboxRows.push(row);
    }
    if (!metaEntity) return undefined;
    const record = await this.toRecord(metaEntity);
    const meta: Meta = {
      ...record,
      rowCount: Number(metaEntity.rowCount ?? 0),
      inboxConsumed: Number(metaEntity.inboxConsumed ?? 0),
    };
    const prefix = `h${pad(meta.generation, 6)}_`;
    const committed = historyRows
      .filter((r) => (r.rowKey as string).startsWith(prefix))
      .sort((a, b) => ((a.rowKey as string) < (b.rowKey as string) ? -1 : 1))
      .slice(0, meta.rowCount);
    const history = await this.decodeRows(committed);
    let inboxSeq = meta.inboxConsumed;
    const pending = inboxRows
      .filter((r) => Number((r.rowKey as string).slice(1)) > meta.inboxConsumed)
      .sort((a, b) => ((a.rowKey as string) < (b.rowKey as string) ? -1 : 1));
    for (const row of pending) inboxSeq = Math.max(inboxSeq, Number((row.rowKey as string).slice(1)));
    const inbox = await this.decodeRows(pending);
    return { meta, history, inbox, inboxSeq };
  }

  private async decodeRows(rows: Record<string, unknown>[]): Promise<HistoryEvent[]> {
    const events: HistoryEvent[] = [];
    let text = "";
    for (const row of rows) {
      text += row.d as string;
      if (row.e === true) {
        events.push(...(await this.decodeEvents(text)));
        text = "";
      }
    }
    // An unterminated record is a write that never committed; ignore it.
    return events;
  }

  async purge(instanceId: string): Promise<void> {
    const deletes: TransactionAction[] = [];
    const filter = odata`PartitionKey eq ${instanceId}`;
    for await (const row of this.history.listEntities({ queryOptions: { filter, select: ["RowKey"] } })) {
      deletes.push(["delete", { partitionKey: instanceId, rowKey: row.rowKey! }]);
    }
    await this.submit(instanceId, deletes);
    await this.instances.deleteEntity(instanceId, "").catch(ignore404);
    const prefix = `${encodeURIComponent(instanceId)}/`;
    for await (const blob of this.blobs.listBlobsFlat({ prefix })) {
      await this.blobs.deleteBlob(blob.name).catch(ignore404);
    }
  }
}

function ignore404(error: unknown): void {
  if ((error as { statusCode?: number }).statusCode !== 404) throw error;
}
