import { describe, expect, test } from "vitest";
import { toSharingUrl } from "../../src/core/arcgis/portal-url.js";
import { redactConnectionString, redactUrl } from "../../src/core/redact.js";

describe("portal URLs are normalized to the Sharing REST root", () => {
  test.each([
    ["arcgis-online", "https://contoso.maps.arcgis.com", "https://contoso.maps.arcgis.com/sharing/rest"],
    [
      "arcgis-online",
      "https://contoso.maps.arcgis.com/home/",
      "https://contoso.maps.arcgis.com/sharing/rest",
    ],
    ["arcgis-online", "https://www.arcgis.com/sharing/rest", "https://www.arcgis.com/sharing/rest"],
    ["arcgis-enterprise", "https://gis.example.com/portal", "https://gis.example.com/portal/sharing/rest"],
    [
      "arcgis-enterprise",
      "https://gis.example.com/portal/sharing/rest/",
      "https://gis.example.com/portal/sharing/rest",
    ],
  ] as const)("%s %s", (kind, input, expected) => {
    expect(toSharingUrl(kind, input, false)).toBe(expected);
  });

  test.each([
    ["arcgis-online", "http://contoso.maps.arcgis.com"],
    ["arcgis-online", "https://contoso.maps.arcgis.com/portal"],
    ["arcgis-enterprise", "https://gis.example.com"],
    ["arcgis-online", "https://user:pw@contoso.maps.arcgis.com"],
    ["arcgis-online", "not a url"],
  ] as const)("refuses %s %s naming portalUrl", (kind, input) => {
    expect(() => toSharingUrl(kind, input, false)).toThrow(expect.objectContaining({ field: "portalUrl" }));
  });

  test("http only on loopback, and only when allowed", () => {
    expect(toSharingUrl("arcgis-online", "http://127.0.0.1:7090", true)).toBe(
      "http://127.0.0.1:7090/sharing/rest",
    );
    expect(() => toSharingUrl("arcgis-online", "http://127.0.0.1:7090", false)).toThrow();
    expect(() => toSharingUrl("arcgis-online", "http://example.com", true)).toThrow();
  });
});

describe("redaction", () => {
  test("tokens and keys are stripped from what reaches messages and logs", () => {
    expect(redactUrl("https://x.com/a?token=abc&f=json")).toBe("https://x.com/a?token=***&f=json");
    expect(redactUrl("https://u:p@x.com/a?refresh_token=r")).toBe("https://x.com/a?refresh_token=***");
    expect(redactConnectionString("AccountName=a;AccountKey=secret==;EndpointSuffix=x")).toBe(
      "AccountName=a;AccountKey=***;EndpointSuffix=x",
    );
  });
});
