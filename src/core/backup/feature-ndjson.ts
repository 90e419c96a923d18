const SEPARATOR = '},{"attributes":';
const LINE_BREAK = '}\n{"attributes":';

/**
 * Features as newline-delimited JSON, one line per feature, each exactly `JSON.stringify` of the
 * feature. Serialising the page in one call and breaking it between features is about twice as
 * fast as one call per feature; it applies when every feature starts with its `attributes`
 * (what ArcGIS sends), which puts exactly one `},{"attributes":` between two features. That
 * sequence cannot occur inside a string (its quotes would be escaped), so when the count of
 * separators matches, each one is a boundary; otherwise the page is written feature by feature.
 */
export function toNdjson(features: readonly object[]): string {
  if (features.length === 0) return "";
  if (features.every(startsWithAttributes)) {
    const all = JSON.stringify(features);
    const body = all.slice(1, -1);
    let separators = 0;
    for (let at = body.indexOf(SEPARATOR); at !== -1; at = body.indexOf(SEPARATOR, at + SEPARATOR.length)) {
      separators++;
    }
    if (separators === features.length - 1) return `${body.replaceAll(SEPARATOR, LINE_BREAK)}\n`;
  }
  let text = "";
  for (const feature of features) text += `${JSON.stringify(feature)}\n`;
  return text;
}

function startsWithAttributes(feature: object): boolean {
  for (const key in feature) return key === "attributes";
  return false;
}
