import { describe, expect, test } from "vitest";
import { isBlockedHost, parseSecureUrl } from "../../src/core/net/host-policy.js";

describe("hosts the app never connects to", () => {
  test.each([
    "169.254.169.254",
    "169.254.0.1",
    "[fe80::1]",
    "febf::1",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "168.63.129.16",
    "0.0.0.0",
    "[::]",
    "metadata.google.internal",
    "METADATA.google.internal.",
    "metadata",
  ])("%s is blocked", (host) => {
    expect(isBlockedHost(host)).toBe(true);
  });

  test.each([
    "10.0.0.5",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "127.0.0.1",
    "localhost",
    "[::1]",
    "fd00::1",
    "contoso.maps.arcgis.com",
    "metadata.example.com",
  ])("%s is allowed (private networks, loopback, public names)", (host) => {
    expect(isBlockedHost(host)).toBe(false);
  });

  test("a URL's host is checked as the URL parser normalizes it (decimal, hex, mapped forms)", () => {
    for (const url of [
      "https://2852039166/",
      "https://0xa9.0xfe.0xa9.0xfe/",
      "https://[::ffff:169.254.169.254]/",
      "https://metadata.google.internal./computeMetadata/v1/",
    ]) {
      expect(() => parseSecureUrl(url, "portalUrl", false)).toThrow(
        expect.objectContaining({ field: "portalUrl", message: expect.stringContaining("metadata") }),
      );
    }
    expect(parseSecureUrl("https://192.168.1.10/portal", "portalUrl", false).hostname).toBe("192.168.1.10");
  });
});
