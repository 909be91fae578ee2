// Copies the browser files the pages use out of node_modules: nothing is loaded from a CDN.
import { copyFileSync, mkdirSync } from "node:fs";

const out = "src/computebill/web/static/dist";
mkdirSync(`${out}/fonts`, { recursive: true });
copyFileSync("node_modules/htmx.org/dist/htmx.min.js", `${out}/htmx.min.js`);
for (const [family, weight] of [
  ["inter", 400], ["inter", 600], ["inter", 700],
  ["jetbrains-mono", 400], ["jetbrains-mono", 500],
]) {
  const file = `${family}-latin-${weight}-normal.woff2`;
  copyFileSync(`node_modules/@fontsource/${family}/files/${file}`, `${out}/fonts/${file}`);
}
