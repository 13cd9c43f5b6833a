// Verifying MustCheck receipts (mcr2) and tree heads with nothing but Node's own crypto, as
// docs/receipts.md specifies them. Each failure throws a ReceiptError whose `kind` is the failure kind
// the document names: malformed, not_canonical, unknown_key, bad_signature, bad_proof.
import { createHash, createPublicKey, verify } from 'node:crypto';

const LEAF_TAG = Buffer.from('mustcheck.leaf.v1\n');
const HEAD_TAG = Buffer.from('mustcheck.tree_head.v1\n');
const ANSWER_FIELDS = ['at', 'caller', 'key', 'matter', 'measures', 'outcome', 'seq', 'subject', 'version'];
const HEAD_FIELDS = ['alg', 'at', 'kid', 'log', 'root', 'size'];

export class ReceiptError extends Error {
  constructor(kind, message) {
    super(`${kind}: ${message}`);
    this.kind = kind;
  }
}

/** Strict unpadded base64url: the one spelling, or not_canonical. */
export function unb64(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new ReceiptError('not_canonical', 'not unpadded base64url');
  }
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) {
    throw new ReceiptError('not_canonical', 'unused bits set in the last character');
  }
  return bytes;
}

/** Canonical JSON: keys sorted, no white space, UTF-8 (JSON.stringify escapes exactly as required). */
export function canonicalJson(value) {
  return Buffer.from(JSON.stringify(sorted(value)), 'utf8');
}

function sorted(value) {
  if (Array.isArray(value)) return value.map(sorted);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sorted(value[key])]));
  }
  return value;
}

const sha256 = (...parts) => createHash('sha256').update(Buffer.concat(parts)).digest();
const leafHash = (data) => sha256(Buffer.from([0]), data);
const nodeHash = (left, right) => sha256(Buffer.from([1]), left, right);

/** The bytes a record's leaf hashes: its answer and its chain hash (hex). */
export function leafData(answer, recordHashHex) {
  return Buffer.concat([LEAF_TAG, canonicalJson({ answer, record: recordHashHex })]);
}

/** Public keys by key id, from {kid: PEM} (ReceiptKeys) as Node KeyObjects. */
export function loadKeys(pems) {
  return Object.fromEntries(Object.entries(pems).map(([kid, pem]) => [kid, createPublicKey(pem)]));
}

const sameKeys = (object, names) =>
  object !== null && typeof object === 'object' && !Array.isArray(object) &&
  JSON.stringify(Object.keys(object).sort()) === JSON.stringify([...names].sort());

/** Verify a signed tree head's body (without sig) and signature; returns the signed bytes. */
export function verifyHead(head, signature, keys) {
  if (!sameKeys(head, HEAD_FIELDS) || !Number.isSafeInteger(head.size) || head.size < 0) {
    throw new ReceiptError('malformed', `a tree head has exactly ${HEAD_FIELDS.join(', ')}`);
  }
  if (head.alg?.hash !== 'sha256' || head.alg?.sig !== 'ed25519' || !(head.kid in keys)) {
    throw new ReceiptError('unknown_key', `key ${head.kid} with ${JSON.stringify(head.alg)} is not known`);
  }
  const signed = Buffer.concat([HEAD_TAG, canonicalJson(head)]);
  if (signature.length !== 64 || !verify(null, signed, keys[head.kid], signature)) {
    throw new ReceiptError('bad_signature', 'the tree head signature does not match');
  }
  return signed;
}

/** RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or null. */
export function rootFromInclusion(index, size, leaf, proof) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn) return null;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return null;
    if (fn & 1n || fn === sn) {
      r = nodeHash(p, r);
      while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

/** RFC 9162 §2.1.4.2: whether the tree (m, oldRoot) is a prefix of (n, newRoot). */
export function verifyConsistency(m, n, oldRoot, newRoot, proof) {
  if (m < 0 || m > n) return false;
  if (m === n) return proof.length === 0 && oldRoot.equals(newRoot);
  if (m === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  let path = proof;
  if ((m & (m - 1)) === 0) path = [oldRoot, ...proof];
  let fn = BigInt(m) - 1n;
  let sn = BigInt(n) - 1n;
  while (fn & 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n; sn >>= 1n;
  }
  return sn === 0n && fr.equals(oldRoot) && sr.equals(newRoot);
}

/** Verify an mcr2 receipt (docs/receipts.md, steps 1-6); returns {answer, head, recordHash}. */
export function verifyReceipt(compact, keys) {
  const parts = compact.split('.');
  if (parts.length !== 4 || parts[0] !== 'mcr2') {
    throw new ReceiptError('malformed', 'expected mcr2.<payload>.<proof>.<signature>');
  }
  const [payload, proofBytes, signature] = parts.slice(1).map(unb64);
  let data;
  try {
    data = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    throw new ReceiptError('malformed', 'the payload is not JSON');
  }
  if (!canonicalJson(data).equals(payload)) {
    throw new ReceiptError('not_canonical', 'the payload is not canonical JSON');
  }
  if (!sameKeys(data, ['answer', 'head']) || !sameKeys(data.answer, ANSWER_FIELDS) || proofBytes.length < 32) {
    throw new ReceiptError('malformed', 'the payload must hold answer and head, the proof the record hash');
  }
  const { answer, head } = data;
  verifyHead(head, signature, keys);
  if ((proofBytes.length - 32) % 32 !== 0) {
    throw new ReceiptError('bad_proof', 'the inclusion proof is not a whole number of hashes');
  }
  const recordHash = proofBytes.subarray(0, 32).toString('hex');
  const proof = [];
  for (let at = 32; at < proofBytes.length; at += 32) proof.push(proofBytes.subarray(at, at + 32));
  const leaf = leafHash(leafData(answer, recordHash));
  const root = Number.isSafeInteger(answer.seq) && answer.seq >= 1
    ? rootFromInclusion(answer.seq - 1, head.size, leaf, proof)
    : null;
  if (root === null || !root.equals(unb64(head.root))) {
    throw new ReceiptError('bad_proof', `the inclusion proof of record ${answer.seq} does not lead to the signed root`);
  }
  return { answer, head, recordHash, proofHashes: proof.length };
}
