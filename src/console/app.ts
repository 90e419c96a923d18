import { showError } from "./api.js";
import { renderBrowse } from "./browse.js";
import { h, replace } from "./dom.js";
import { renderIdentities } from "./identities.js";
import { renderRestore } from "./restore.js";
import { parseRoute, type Route } from "./route.js";
import { renderRuns } from "./runs.js";

// The console's shell: four pages behind hash links (#/identities, #/runs/<id>, #/browse/<id>,
// #/restore/<id>), so every view has an address and the server serves one page.

const PAGES: Array<{ name: Route["page"]; title: string }> = [
  { name: "identities", title: "Identities" },
  { name: "runs", title: "Runs" },
  { name: "browse", title: "Browse" },
  { name: "restore", title: "Restore" },
];

function navigation(route: Route): HTMLElement {
  return h(
    "nav",
    {},
    h("span", { class: "brand" }, "ArcGIS org backup"),
    ...PAGES.map((page) => {
      const href = page.name === "identities" ? "#/identities" : `#/${page.name}/${route.identityId ?? ""}`;
      return h("a", { href, class: page.name === route.page ? "current" : "" }, page.title);
    }),
  );
}

async function render(): Promise<void> {
  const route = parseRoute(location.hash);
  const header = document.querySelector("header");
  const main = document.querySelector("main");
  if (!header || !main) return;
  replace(header, navigation(route));
  replace(main, h("p", { class: "muted" }, "Loading…"));
  try {
    if (route.page === "runs") await renderRuns(main, route);
    else if (route.page === "browse") await renderBrowse(main, route);
    else if (route.page === "restore") await renderRestore(main, route);
    else await renderIdentities(main, route);
  } catch (error) {
    const box = h("div");
    replace(main, box);
    showError(box, error);
  }
}

window.addEventListener("hashchange", () => void render());
void render();
