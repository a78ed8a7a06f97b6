// Fetch a bundle file and check its sha256 (WebCrypto) against manifest.json before anything
// uses it: a file that differs is refused, whatever its content.

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
