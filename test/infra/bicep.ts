import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { Language, type Node, Parser } from "web-tree-sitter";

/**
 * Just enough of Bicep to check the infra offline (no Bicep compiler can run here): a tree-sitter parse that
 * reports syntax errors with file:line:column, and the declarations the cross-file checks need.
 */

export const REPO_ROOT = path.resolve(import.meta.dirname, "../..");
export const INFRA_DIR = path.join(REPO_ROOT, "infra");

export interface Location {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
}

export interface BicepFile {
  file: string;
  source: string;
  root: Node;
}

let parser: Promise<Parser> | undefined;

/** One parser per process; web-tree-sitter's init loads its own WASM, then the Bicep grammar's. */
export function bicepParser(): Promise<Parser> {
  parser ??= (async () => {
    await Parser.init();
    const wasm = createRequire(import.meta.url).resolve("tree-sitter-bicep/tree-sitter-bicep.wasm");
    return new Parser().setLanguage(await Language.load(wasm));
  })();
  return parser;
}

export async function parseBicep(source: string, file = "<inline>.bicep"): Promise<BicepFile> {
  const tree = (await bicepParser()).parse(source);
  if (!tree) throw new Error(`tree-sitter returned no tree for ${file}`);
  return { file, source, root: tree.rootNode };
}

export async function parseBicepFile(file: string): Promise<BicepFile> {
  return parseBicep(readFileSync(file, "utf8"), file);
}

/** Every .bicep file under dir, sorted. */
export function listBicepFiles(dir = INFRA_DIR): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith(".bicep")) found.push(path.join(entry.parentPath, entry.name));
  }
  return found.sort();
}

/** Every .bicep file under dir, parsed, keyed by absolute path. */
export async function parseInfra(dir = INFRA_DIR): Promise<Map<string, BicepFile>> {
  const files = new Map<string, BicepFile>();
  for (const file of listBicepFiles(dir)) files.set(file, await parseBicepFile(file));
  return files;
}

export function locate(file: string, node: Node): Location {
  return { file, line: node.startPosition.row + 1, column: node.startPosition.column + 1 };
}

/** A path relative to the repository when it is inside it, else as given. */
export function displayPath(file: string): string {
  const relative = path.relative(REPO_ROOT, file);
  return relative && !relative.startsWith("..") && !path.isAbsolute(relative) ? relative : file;
}

export function formatLocation(loc: Location): string {
  return `${displayPath(loc.file)}:${loc.line}:${loc.column}`;
}

export interface SyntaxProblem extends Location {
  kind: "ERROR" | "MISSING";
  /** The offending text (ERROR) or the node type the parser inserted (MISSING). */
  text: string;
}

/** ERROR and MISSING nodes, in source order. */
export function syntaxProblems(bicep: BicepFile): SyntaxProblem[] {
  const problems: SyntaxProblem[] = [];
  const visit = (node: Node) => {
    if (node.isMissing) {
      problems.push({ ...locate(bicep.file, node), kind: "MISSING", text: node.type });
    } else if (node.isError) {
      problems.push({ ...locate(bicep.file, node), kind: "ERROR", text: node.text.slice(0, 80) });
    }
    for (const child of node.children) if (child?.hasError || child?.isMissing) visit(child);
  };
  if (bicep.root.hasError) visit(bicep.root);
  return problems;
}

export function formatSyntaxProblem(p: SyntaxProblem): string {
  return `${formatLocation(p)}: ${p.kind === "MISSING" ? `missing ${p.text}` : `syntax error near ${JSON.stringify(p.text)}`}`;
}

// ---------------------------------------------------------------------------------------------------------
// Values

/** The value of a string literal without interpolation; undefined for anything else. */
export function stringLiteral(node: Node | null | undefined): string | undefined {
  if (node?.type !== "string") return undefined;
  let value = "";
  for (const child of node.namedChildren) {
    if (!child) continue;
    if (child.type === "interpolation") return undefined;
    if (child.type === "escape_sequence") value += decodeEscape(child.text);
    else value += child.text;
  }
  return value;
}

function decodeEscape(sequence: string): string {
  const map: Record<string, string> = { n: "\n", r: "\r", t: "\t", "\\": "\\", "'": "'", $: "$" };
  return map[sequence.slice(1)] ?? sequence.slice(1);
}

/** The key of an object property: an identifier or a string literal. */
function propertyKey(property: Node): string | undefined {
  const key = property.namedChildren[0];
  if (!key) return undefined;
  return key.type === "string" ? stringLiteral(key) : key.text;
}

/** The properties of an object literal, key → value node (nested resource declarations are skipped). */
export function objectProperties(object: Node | null | undefined): Map<string, Node> {
  const result = new Map<string, Node>();
  if (object?.type !== "object") return result;
  for (const property of object.namedChildren) {
    if (property?.type !== "object_property" || property.namedChildren[0]?.type === "resource_declaration")
      continue;
    const key = propertyKey(property);
    const value = property.namedChildren[1];
    if (key !== undefined && value) result.set(key, value);
  }
  return result;
}

/** The value at a path of object keys, e.g. properties.siteConfig.appSettings. */
export function propertyAt(object: Node | null | undefined, ...keys: string[]): Node | undefined {
  let current: Node | undefined = object ?? undefined;
  for (const key of keys) {
    current = objectProperties(current).get(key);
    if (!current) return undefined;
  }
  return current;
}

/** The object a module or resource is assigned: plain, behind `if (...)`, or the body of a `for`. */
function declarationBody(value: Node | null | undefined): Node | undefined {
  if (!value) return undefined;
  if (value.type === "object") return value;
  if (value.type === "if_statement")
    return value.namedChildren.find((c) => c?.type === "object") ?? undefined;
  if (value.type === "for_statement") return declarationBody(value.childForFieldName("body"));
  return undefined;
}

function topLevel(bicep: BicepFile, type: string): Node[] {
  return bicep.root.namedChildren.filter((n): n is Node => n?.type === type);
}

// ---------------------------------------------------------------------------------------------------------
// Declarations

export interface ParamDecl {
  name: string;
  /** Has `= default` or a nullable type (`string?`): callers may omit it. */
  optional: boolean;
  defaultValue?: Node;
  loc: Location;
}

export function paramDecls(bicep: BicepFile): Map<string, ParamDecl> {
  const params = new Map<string, ParamDecl>();
  for (const decl of topLevel(bicep, "parameter_declaration")) {
    const name = decl.namedChildren[0]?.text;
    if (!name) continue;
    const type = decl.namedChildren.find((c) => c?.type === "type");
    const equals = decl.children.findIndex((c) => c?.type === "=");
    const defaultValue = equals >= 0 ? (decl.children[equals + 1] ?? undefined) : undefined;
    const nullable = type?.namedChildren[0]?.type === "nullable_type";
    params.set(name, {
      name,
      optional: defaultValue !== undefined || nullable,
      ...(defaultValue ? { defaultValue } : {}),
      loc: locate(bicep.file, decl),
    });
  }
  return params;
}

export function outputDecls(bicep: BicepFile): Map<string, Location> {
  const outputs = new Map<string, Location>();
  for (const decl of topLevel(bicep, "output_declaration")) {
    const name = decl.namedChildren[0]?.text;
    if (name) outputs.set(name, locate(bicep.file, decl));
  }
  return outputs;
}

export function varDecls(bicep: BicepFile): Map<string, Node> {
  const vars = new Map<string, Node>();
  for (const decl of topLevel(bicep, "variable_declaration")) {
    const name = decl.namedChildren[0]?.text;
    const value = decl.namedChildren[1];
    if (name && value) vars.set(name, value);
  }
  return vars;
}

export interface ModuleDecl {
  symbol: string;
  /** The path as written; undefined when it is not a plain string. */
  path?: string;
  body?: Node;
  loc: Location;
}

export function moduleDecls(bicep: BicepFile): ModuleDecl[] {
  return topLevel(bicep, "module_declaration").map((decl) => {
    const [symbol, pathNode, value] = decl.namedChildren;
    const modulePath = stringLiteral(pathNode);
    const body = declarationBody(value);
    return {
      symbol: symbol?.text ?? "",
      ...(modulePath !== undefined ? { path: modulePath } : {}),
      ...(body ? { body } : {}),
      loc: locate(bicep.file, decl),
    };
  });
}

export interface ResourceDecl {
  symbol: string;
  /** Type with API version, e.g. Microsoft.Web/sites@2024-04-01. */
  type: string;
  existing: boolean;
  body?: Node;
  loc: Location;
}

/** Resource declarations at any depth (nested child resources included). */
export function resourceDecls(bicep: BicepFile): ResourceDecl[] {
  return bicep.root.descendantsOfType("resource_declaration").flatMap((decl) => {
    if (!decl) return [];
    const [symbol, typeNode] = decl.namedChildren;
    const value = decl.namedChildren[decl.namedChildren.length - 1];
    const body = declarationBody(value);
    return [
      {
        symbol: symbol?.text ?? "",
        type: stringLiteral(typeNode) ?? "",
        existing: decl.children.some((c) => c?.type === "existing"),
        ...(body ? { body } : {}),
        loc: locate(bicep.file, decl),
      },
    ];
  });
}

/** Resources whose type (without API version) is `type`, compared case-insensitively as ARM does. */
export function resourcesOfType(bicep: BicepFile, type: string): ResourceDecl[] {
  return resourceDecls(bicep).filter((r) => r.type.split("@")[0]?.toLowerCase() === type.toLowerCase());
}

export interface MemberRef {
  symbol: string;
  name: string;
  loc: Location;
}

/** Every `<symbol>.outputs.<name>` (or `.?outputs`) in the file. */
export function outputRefs(bicep: BicepFile): MemberRef[] {
  const refs: MemberRef[] = [];
  for (const member of bicep.root.descendantsOfType("member_expression")) {
    const inner = member?.childForFieldName("object");
    if (!member || inner?.type !== "member_expression") continue;
    if (inner.childForFieldName("property")?.text !== "outputs") continue;
    const symbol = inner.childForFieldName("object");
    const name = member.childForFieldName("property")?.text;
    if (symbol?.type === "identifier" && name)
      refs.push({ symbol: symbol.text, name, loc: locate(bicep.file, member) });
  }
  return refs;
}

export interface Call {
  name: string;
  args: Node[];
  loc: Location;
}

/** Calls of the named functions, e.g. loadTextContent. */
export function callsOf(bicep: BicepFile, ...names: string[]): Call[] {
  const calls: Call[] = [];
  for (const call of bicep.root.descendantsOfType("call_expression")) {
    const fn = call?.childForFieldName("function");
    if (!call || fn?.type !== "identifier" || !names.includes(fn.text)) continue;
    const args =
      call.childForFieldName("arguments")?.namedChildren.filter((a): a is Node => a !== null) ?? [];
    calls.push({ name: fn.text, args, loc: locate(bicep.file, call) });
  }
  return calls;
}

/** Module references that are not local files (registry or template spec); these are not followed. */
export function isRemoteModule(modulePath: string): boolean {
  return /^(br[:/]|ts[:/])/.test(modulePath);
}

// ---------------------------------------------------------------------------------------------------------
// Cross-file contract

/**
 * Module calls against the called files: the file exists, every param passed is declared, every param
 * without a default is passed, every `<module>.outputs.<name>` read is declared. Returns one message per
 * problem, each starting with file:line:column.
 */
export function checkModuleContracts(files: ReadonlyMap<string, BicepFile>): string[] {
  const problems: string[] = [];
  for (const bicep of files.values()) {
    const targets = new Map<string, BicepFile>();
    for (const mod of moduleDecls(bicep)) {
      const where = formatLocation(mod.loc);
      if (mod.path === undefined) {
        problems.push(`${where}: module ${mod.symbol} has no plain string path`);
        continue;
      }
      if (isRemoteModule(mod.path)) continue;
      const targetPath = path.resolve(path.dirname(bicep.file), mod.path);
      const target = files.get(targetPath);
      if (!target) {
        problems.push(`${where}: module ${mod.symbol} refers to ${mod.path}, which does not exist`);
        continue;
      }
      targets.set(mod.symbol, target);
      const declared = paramDecls(target);
      const paramsNode = propertyAt(mod.body, "params");
      if (paramsNode && paramsNode.type !== "object") {
        problems.push(`${where}: module ${mod.symbol} params is not an object literal`);
        continue;
      }
      const passed = objectProperties(paramsNode);
      for (const [name, value] of passed) {
        if (!declared.has(name)) {
          problems.push(
            `${formatLocation(locate(bicep.file, value))}: module ${mod.symbol} passes ${name}, which ${mod.path} does not declare`,
          );
        }
      }
      for (const param of declared.values()) {
        if (!param.optional && !passed.has(param.name)) {
          problems.push(
            `${where}: module ${mod.symbol} does not pass ${param.name}, which ${mod.path} requires`,
          );
        }
      }
    }
    for (const ref of outputRefs(bicep)) {
      const target = targets.get(ref.symbol);
      if (target && !outputDecls(target).has(ref.name)) {
        problems.push(
          `${formatLocation(ref.loc)}: ${ref.symbol}.outputs.${ref.name} is not an output of ${displayPath(target.file)}`,
        );
      }
    }
  }
  return problems;
}

/**
 * The app settings a file sets on a function app: the properties of a `Microsoft.Web/sites/config` resource
 * named 'appsettings', or the name/value objects of a site's `siteConfig.appSettings`. Undefined when the
 * file sets none.
 */
export function appSettings(bicep: BicepFile): Map<string, Node> | undefined {
  let found: Map<string, Node> | undefined;
  for (const config of resourcesOfType(bicep, "Microsoft.Web/sites/config")) {
    if (stringLiteral(propertyAt(config.body, "name")) !== "appsettings") continue;
    found ??= new Map();
    for (const [name, value] of objectProperties(propertyAt(config.body, "properties")))
      found.set(name, value);
  }
  for (const site of resourcesOfType(bicep, "Microsoft.Web/sites")) {
    const list = propertyAt(site.body, "properties", "siteConfig", "appSettings");
    if (list?.type !== "array") continue;
    found ??= new Map();
    for (const item of list.namedChildren) {
      const name = stringLiteral(propertyAt(item, "name"));
      const value = propertyAt(item, "value");
      if (name !== undefined && value) found.set(name, value);
    }
  }
  return found;
}

export function readRepoFile(relative: string): string {
  return readFileSync(path.join(REPO_ROOT, relative), "utf8");
}

export function repoFileExists(relative: string): boolean {
  return existsSync(path.join(REPO_ROOT, relative));
}
