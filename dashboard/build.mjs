// Builds the dashboard into dist/: one bundled, minified app.js (strophe.js
// and uPlot inside, nothing fetched from a CDN at run time), the page, its
// style sheets. `scripts/build-dashboard` runs `npm ci` and then this.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';

const dist = new URL('./dist/', import.meta.url);
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: [new URL('./src/app.js', import.meta.url).pathname],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'esm',
  target: ['es2020'],
  platform: 'browser',
  outfile: new URL('app.js', dist).pathname,
  legalComments: 'linked',
  logLevel: 'warning',
});
for (const [from, to] of [
  ['./src/index.html', 'index.html'],
  ['./src/style.css', 'style.css'],
  ['./node_modules/uplot/dist/uPlot.min.css', 'uPlot.min.css'],
]) {
  copyFileSync(new URL(from, import.meta.url), new URL(to, dist));
}
console.log(`dashboard built in ${dist.pathname}`);
