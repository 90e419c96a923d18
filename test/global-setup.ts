import type { TestProject } from "vitest/node";
import { type AzuriteEndpoints, startAzurite } from "../tools/azurite.js";

declare module "vitest" {
  export interface ProvidedContext {
    azurite: AzuriteEndpoints;
  }
}

/** One in-memory storage emulator for the whole test run, on free ports. */
export default async function setup(project: TestProject) {
  const azurite = await startAzurite();
  const { stop, ...endpoints } = azurite;
  project.provide("azurite", endpoints);
  return stop;
}
