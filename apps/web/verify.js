// Fetch bundle files and check their sha256 (WebCrypto) against manifest.json before anything
// uses them: a file that differs is refused, whatever its content.

export class IntegrityError extends Error {}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The bytes of `name` from `base`, after checking size and sha256 against `manifest.files`. */
export async function fetchVerified(base, manifest, name) {
  const want = manifest.files[name];
  if (!want) throw new IntegrityError(`refused ${name}: not listed in manifest.json`);
  const response = await fetch(new URL(name, base));
  if (!response.ok) throw new IntegrityError(`refused ${name}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const got = hex(await crypto.subtle.digest('SHA-256', bytes));
  if (bytes.length !== want.bytes || got !== want.sha256) {
    throw new IntegrityError(`refused ${name}: sha256 ${got.slice(0, 12)}… (${bytes.length} bytes) does not match ` +
      `the manifest's ${want.sha256.slice(0, 12)}… (${want.bytes} bytes); the file was changed or damaged`);
  }
  return bytes;
}

/**
 * Every file this page may use (the tokenizer, each variant's model, elastic files), verified, as {name: bytes};
 * the first bad file stops it all. Files for other runtimes (a .litertlm) are not fetched.
 */
export async function fetchAllVerified(base, manifest) {
  const names = [manifest.tokenizer.file, manifest.tokenizer.config, ...manifest.variants.map((v) => v.file),
    ...(manifest.elastic ?? []).map((e) => e.file)]
    .filter((name, i, all) => name && all.indexOf(name) === i);
  const bytes = await Promise.all(names.map((name) => fetchVerified(base, manifest, name)));
  return Object.fromEntries(names.map((name, i) => [name, bytes[i]]));
}
