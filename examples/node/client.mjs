// MustCheck from Node.js over gRPC, built from proto/ alone: check one subject, batch-check several,
// verify every receipt (Ed25519 tree-head signature and inclusion proof, docs/receipts.md), read the
// refusal reasons (trailers mustcheck-reason and mustcheck-reason-name), and verify the committed test
// vectors (tests/vectors/). Exits non-zero on any failure.
//
//   npm ci
//   node client.mjs --vectors-only
//   node client.mjs --target 127.0.0.1:50051 --token-file ../../mustcheck-demo/demo.token \
//       --matter MOF-0001 SUBJECT [SUBJECT ...]
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { ReceiptError, loadKeys, unb64, verifyConsistency, verifyHead, verifyReceipt } from './receipts.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(here, '..', '..');

const { values: options, positionals: subjects } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: 'string' },
    'token-file': { type: 'string' },
    matter: { type: 'string', default: 'MOF-0001' },
    purpose: { type: 'string', default: 'Node.js example' },
    'authorization-ref': { type: 'string', default: 'NODE-EXAMPLE-AUTH' },
    vectors: { type: 'string', default: join(REPO, 'tests', 'vectors') },
    'vectors-only': { type: 'boolean', default: false },
  },
});

let failures = 0;
function check(condition, what) {
  if (!condition) {
    failures += 1;
    console.log(`FAIL ${what}`);
  }
  return condition;
}

// -- the committed vectors ---------------------------------------------------------------------

function verifyVectors(directory) {
  const read = (name) => JSON.parse(readFileSync(join(directory, name), 'utf8'));
  const keys = loadKeys(read('keys.json').public_keys_pem);
  const receipts = read('receipts.json');
  let passed = 0;
  for (const vector of receipts.valid) {
    try {
      const { answer, head, recordHash } = verifyReceipt(vector.receipt, keys);
      const expect = vector.expect;
      check(answer.seq === expect.seq && answer.caller === expect.caller && head.size === expect.size &&
        head.log === expect.log && recordHash === expect.record_hash, `vector ${vector.name}: fields`);
      passed += 1;
    } catch (error) {
      check(false, `vector ${vector.name} should verify: ${error.message}`);
    }
  }
  let refused = 0;
  for (const vector of receipts.invalid) {
    try {
      verifyReceipt(vector.receipt, keys);
      check(false, `vector ${vector.name} verified but must fail (${vector.fails})`);
    } catch (error) {
      if (check(error instanceof ReceiptError && error.kind === vector.fails,
        `vector ${vector.name} must fail as ${vector.fails}, failed as: ${error.message}`)) refused += 1;
    }
  }
  const heads = read('tree_heads.json');
  const body = ({ sig, ...rest }) => rest;
  const [oldHead, newHead] = [heads.old, heads.new];
  for (const head of [oldHead, newHead]) {
    try {
      verifyHead(body(head), unb64(head.sig), keys);
    } catch (error) {
      check(false, `tree head of size ${head.size}: ${error.message}`);
    }
  }
  const proof = heads.consistency_proof.map(unb64);
  const consistent = (p) => verifyConsistency(oldHead.size, newHead.size, unb64(oldHead.root), unb64(newHead.root), p);
  check(consistent(proof), 'the consistency proof verifies');
  const altered = proof.map((hash, index) => (index === 0 ? Buffer.from([hash[0] ^ 1, ...hash.subarray(1)]) : hash));
  check(!consistent(altered), 'an altered consistency proof fails');
  check(!consistent(proof.slice(0, -1)), 'a truncated consistency proof fails');
  console.log(`vectors: ${passed} valid verified, ${refused} invalid refused, tree heads consistent`);
}

// -- against a live gateway --------------------------------------------------------------------

function loadServices() {
  const definition = protoLoader.loadSync(['mustcheck/v1/check.proto', 'mustcheck/v1/reasons.proto'], {
    includeDirs: [join(REPO, 'proto')],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const reasons = definition['mustcheck.v1.Reason'].type.value.map((value) => value.name);
  return { v1: grpc.loadPackageDefinition(definition).mustcheck.v1, reasons };
}

const call = (client, method, request, metadata) =>
  new Promise((resolveCall, rejectCall) => {
    client[method](request, metadata, { deadline: Date.now() + 15_000 }, (error, answer) =>
      (error ? rejectCall(error) : resolveCall(answer)));
  });

async function againstGateway() {
  const { v1, reasons } = loadServices();
  const client = new v1.CheckService(options.target, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${readFileSync(options['token-file'], 'utf8').trim()}`);
  const request = { matter: options.matter, purpose: options.purpose, authorization_ref: options['authorization-ref'] };

  const keys = loadKeys((await call(client, 'ReceiptKeys', {}, metadata)).public_keys_pem);
  const verified = (receipt, what) => {
    try {
      return verifyReceipt(receipt, keys);
    } catch (error) {
      check(false, `${what}: receipt does not verify: ${error.message}`);
      return null;
    }
  };

  const answer = await call(client, 'Check', { ...request, subject: subjects[0] }, metadata);
  const single = verified(answer.receipt, 'check');
  if (single && check(single.answer.matter === options.matter &&
    String(single.answer.version) === String(answer.data_version), 'check: the receipt states the answer')) {
    console.log(`check: ${answer.subject} ${answer.outcome}, receipt verified (record ${single.answer.seq}, ` +
      `tree of ${single.head.size}, ${single.proofHashes} proof hashes)`);
  }

  const batch = await call(client, 'BatchCheck', { ...request, subjects }, metadata);
  let receipts = 0;
  let itemErrors = 0;
  for (const item of batch.items) {
    if (item.answer === 'result') {
      if (verified(item.result.receipt, `batch item ${item.index}`)) receipts += 1;
    } else {
      itemErrors += 1;
      check(reasons.includes(item.error.reason_name) && item.error.reason_name !== 'REASON_UNSPECIFIED',
        `batch item ${item.index}: reason ${item.error.reason} has its enum name (${item.error.reason_name})`);
      console.log(`batch item ${item.index}: refused, ${item.error.reason} (${item.error.reason_name})`);
    }
  }
  console.log(`batch: ${receipts} receipts verified, ${itemErrors} items refused`);

  try {
    await call(client, 'Check', { ...request, subject: subjects[0], matter: 'NO-SUCH-MATTER' }, metadata);
    check(false, 'an unknown matter must be refused');
  } catch (error) {
    const [code] = error.metadata.get('mustcheck-reason');
    const [name] = error.metadata.get('mustcheck-reason-name');
    check(error.code === grpc.status.NOT_FOUND && code === 'matter.unknown' && name === 'REASON_MATTER_UNKNOWN' &&
      reasons.includes(name), `unknown matter: status ${error.code}, reasons ${code} ${name}`);
    console.log(`refusal: ${grpc.status[error.code]} ${code} (${name})`);
  }
  client.close();
}

verifyVectors(options.vectors);
if (!options['vectors-only']) {
  if (!options.target || !options['token-file'] || subjects.length === 0) {
    console.error('give --target, --token-file and at least one subject (or --vectors-only)');
    process.exit(2);
  }
  try {
    await againstGateway();
  } catch (error) {
    check(false, `gateway call failed: ${error.message}`);
  }
}
console.log(failures === 0 ? 'node example: ok' : `node example: ${failures} failures`);
process.exit(failures === 0 ? 0 : 1);
