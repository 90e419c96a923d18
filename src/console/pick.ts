import { h, link, replace } from "./dom.js";
import { listIdentities } from "./identities.js";
import { hashOf, type Route } from "./route.js";

/** Runs, Browse and Restore work on one identity: the list to choose it from. */
export async function chooseIdentity(main: HTMLElement, page: Route["page"], title: string): Promise<void> {
  const identities = await listIdentities();
  replace(
    main,
    h("h1", {}, title),
    identities.length === 0
      ? h("p", {}, "No identity yet. ", link("#/identities/new", "Add one"), ".")
      : h(
          "ul",
          { class: "choices" },
          ...identities.map((identity) => h("li", {}, link(hashOf(page, [identity.id]), identity.name))),
        ),
  );
}
