/*
 * MustCheck from Java over HTTP/JSON, with nothing but the JDK (17 or later): java.net.http for the calls,
 * the JDK's own Ed25519 and SHA-256 to verify receipts, and a small JSON reader below.
 *
 * Run it (single-file source launch, no build step) against `mustcheck demo --http 127.0.0.1:8080`:
 *
 *   java examples/java/MustCheckExample.java --base-url http://127.0.0.1:8080 \
 *       --token-file mustcheck-demo/demo.token [--subject CODE] [--matter MOF-0001] [--vectors tests/vectors]
 *
 * It checks one subject, batch-checks it with an invalid identifier beside it, fetches the receipt keys
 * (POST /v1/ReceiptKeys) and verifies every receipt it got: the tree head's Ed25519 signature, and the
 * inclusion proof from the answer's leaf to the signed root (docs/receipts.md, step by step). It then
 * alters a receipt twice (one bit of the answer, one bit of the signature) and shows both refused. With
 * --vectors DIR it also verifies the committed test vectors (keys.json, receipts.json): every valid one
 * must verify, every invalid one must fail for the stated reason. Exit status 0 only if all went as it must.
 * With --vectors alone (no --base-url) it verifies the vectors offline.
 */

import java.io.IOException;
import java.math.BigInteger;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

public final class MustCheckExample {

    // ---------------------------------------------------------------- the program

    public static void main(String[] argv) throws Exception {
        Map<String, String> options = parseOptions(argv);
        int failures = 0;
        if (options.containsKey("base-url")) {
            failures += live(options);
        }
        if (options.containsKey("vectors")) {
            failures += vectors(Path.of(options.get("vectors")));
        }
        if (!options.containsKey("base-url") && !options.containsKey("vectors")) {
            System.err.println("give --base-url URL --token-file FILE, and/or --vectors DIR");
            System.exit(2);
        }
        System.out.println(failures == 0 ? "all receipts verified as expected" : failures + " failure(s)");
        System.exit(failures == 0 ? 0 : 1);
    }

    private static int live(Map<String, String> options) throws Exception {
        String token = Files.readString(Path.of(require(options, "token-file"))).strip();
        Gateway gateway = new Gateway(options.get("base-url"), token);
        String subject = options.getOrDefault("subject", "91110108551385082Q");
        String matter = options.getOrDefault("matter", "MOF-0001");
        String purpose = options.getOrDefault("purpose", "Java example");
        int failures = 0;

        Map<String, Object> request = new LinkedHashMap<>();
        request.put("subject", subject);
        request.put("matter", matter);
        request.put("purpose", purpose);
        Map<String, Object> answer = gateway.call("Check", request);
        System.out.println("check " + subject + " for " + matter + ": " + answer.get("outcome")
                + " (data version " + answer.get("dataVersion") + ", "
                + ((List<?>) answer.get("measures")).size() + " measure(s))");
        String receipt = (String) answer.get("receipt");

        Map<String, Object> batch = new LinkedHashMap<>();
        batch.put("subjects", List.of(subject, "914403001922038217"));
        batch.put("matter", matter);
        batch.put("purpose", purpose);
        List<String> receipts = new ArrayList<>(List.of(receipt));
        for (Object item : (List<?>) gateway.call("BatchCheck", batch).get("items")) {
            Map<?, ?> entry = (Map<?, ?>) item;
            if (entry.get("result") != null) {
                Map<?, ?> result = (Map<?, ?>) entry.get("result");
                System.out.println("  batch item " + entry.get("index") + ": " + result.get("outcome"));
                receipts.add((String) result.get("receipt"));
            } else {
                Map<?, ?> error = (Map<?, ?>) entry.get("error");
                System.out.println("  batch item " + entry.get("index") + ": refused, " + error.get("reason"));
            }
        }

        // A refused call: the HTTP status and the reason's name.
        Map<String, Object> invalid = new LinkedHashMap<>(request);
        invalid.put("subject", "914403001922038217");
        try {
            gateway.call("Check", invalid);
            System.out.println("an invalid identifier was answered: FAILED");
            failures++;
        } catch (Refused refused) {
            System.out.println("an invalid identifier: HTTP " + refused.status + " " + refused.body.get("reason")
                    + " (" + refused.body.get("reasonCode") + ")");
        }

        Map<String, PublicKey> keys = new HashMap<>();
        Map<?, ?> pems = (Map<?, ?>) gateway.call("ReceiptKeys", Map.of()).get("publicKeysPem");
        for (Map.Entry<?, ?> pem : pems.entrySet()) {
            keys.put((String) pem.getKey(), publicKeyFromPem((String) pem.getValue()));
        }
        for (String each : receipts) {
            Verified verified = Receipts.verify(each, keys);
            System.out.println("receipt " + verified.id + " verified: record " + verified.seq + " of "
                    + verified.size + " in log " + verified.log + ", signed by " + verified.kid);
        }

        // Altered receipts must fail: one bit of the answer (the leaf changes, the proof no longer leads to
        // the signed root), and one bit of the signature.
        failures += expectFailure("answer altered", alterAnswer(receipt), keys, "bad_proof");
        failures += expectFailure("signature altered", alterSignature(receipt), keys, "bad_signature");
        return failures;
    }

    private static int vectors(Path directory) throws Exception {
        Map<?, ?> keyFile = (Map<?, ?>) Json.parse(Files.readString(directory.resolve("keys.json")));
        Map<String, PublicKey> keys = new HashMap<>();
        for (Map.Entry<?, ?> pem : ((Map<?, ?>) keyFile.get("public_keys_pem")).entrySet()) {
            keys.put((String) pem.getKey(), publicKeyFromPem((String) pem.getValue()));
        }
        Map<?, ?> file = (Map<?, ?>) Json.parse(Files.readString(directory.resolve("receipts.json")));
        int failures = 0;
        int valid = 0;
        for (Object item : (List<?>) file.get("valid")) {
            Map<?, ?> vector = (Map<?, ?>) item;
            try {
                Verified verified = Receipts.verify((String) vector.get("receipt"), keys);
                Map<?, ?> expect = (Map<?, ?>) vector.get("expect");
                if (expect != null && expect.get("seq") != null
                        && ((Number) expect.get("seq")).longValue() != verified.seq) {
                    System.out.println("vector " + vector.get("name") + ": wrong seq " + verified.seq);
                    failures++;
                } else {
                    valid++;
                }
            } catch (InvalidReceipt error) {
                System.out.println("vector " + vector.get("name") + " should verify: " + error.getMessage());
                failures++;
            }
        }
        int invalid = 0;
        for (Object item : (List<?>) file.get("invalid")) {
            Map<?, ?> vector = (Map<?, ?>) item;
            String expected = (String) vector.get("fails");
            failures += expectFailure("vector " + vector.get("name"), (String) vector.get("receipt"), keys,
                    expected);
            invalid++;
        }
        System.out.println("vectors: " + valid + " valid verified, " + invalid + " invalid checked");
        return failures;
    }

    private static int expectFailure(String what, String receipt, Map<String, PublicKey> keys, String kind) {
        try {
            Receipts.verify(receipt, keys);
            System.out.println(what + ": verified, but must fail: FAILED");
            return 1;
        } catch (InvalidReceipt error) {
            if (kind != null && !kind.equals(error.kind)) {
                System.out.println(what + ": failed as " + error.kind + ", expected " + kind + ": FAILED");
                return 1;
            }
            System.out.println(what + ": refused (" + error.kind + "): " + error.getMessage());
            return 0;
        }
    }

    private static String alterAnswer(String receipt) {
        String[] parts = receipt.split("\\.", -1);
        Map<?, ?> payload = (Map<?, ?>) Json.parse(new String(B64.decode(parts[1]), StandardCharsets.UTF_8));
        @SuppressWarnings("unchecked")
        Map<String, Object> answer = (Map<String, Object>) payload.get("answer");
        String caller = (String) answer.get("caller");
        answer.put("caller", (char) (caller.charAt(0) ^ 1) + caller.substring(1));
        parts[1] = B64.encode(Json.canonical(payload).getBytes(StandardCharsets.UTF_8));
        return String.join(".", parts);
    }

    private static String alterSignature(String receipt) {
        String[] parts = receipt.split("\\.", -1);
        byte[] signature = B64.decode(parts[3]);
        signature[0] ^= 1;
        parts[3] = B64.encode(signature);
        return String.join(".", parts);
    }

    private static Map<String, String> parseOptions(String[] argv) {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --name value, got " + argv[i]);
            }
            options.put(argv[i].substring(2), argv[++i]);
        }
        return options;
    }

    private static String require(Map<String, String> options, String name) {
        String value = options.get(name);
        if (value == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return value;
    }

    static PublicKey publicKeyFromPem(String pem) throws Exception {
        String body = pem.replace("-----BEGIN PUBLIC KEY-----", "").replace("-----END PUBLIC KEY-----", "")
                .replaceAll("\\s", "");
        byte[] der = Base64.getDecoder().decode(body);
        return KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(der));
    }

    // ---------------------------------------------------------------- HTTP/JSON calls

    /** A call the gateway refused: the HTTP status and the JSON error body (code, reason, reasonCode, message). */
    static final class Refused extends IOException {
        final int status;
        final Map<?, ?> body;

        Refused(int status, Map<?, ?> body) {
            super("HTTP " + status + ": " + body.get("reason") + ": " + body.get("message"));
            this.status = status;
            this.body = body;
        }
    }

    static final class Gateway {
        private final HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        private final String baseUrl;
        private final String token;

        Gateway(String baseUrl, String token) {
            this.baseUrl = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
            this.token = token;
        }

        Map<String, Object> call(String method, Map<String, ?> request) throws IOException, InterruptedException {
            HttpRequest http = HttpRequest.newBuilder(URI.create(baseUrl + "/v1/" + method))
                    .timeout(Duration.ofSeconds(10))
                    .header("Content-Type", "application/json")
                    .header("Authorization", "Bearer " + token)
                    .POST(HttpRequest.BodyPublishers.ofString(Json.canonical(request), StandardCharsets.UTF_8))
                    .build();
            HttpResponse<String> response = client.send(http, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            Object body = Json.parse(response.body());
            if (response.statusCode() != 200) {
                throw new Refused(response.statusCode(), (Map<?, ?>) body);
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> answer = (Map<String, Object>) body;
            return answer;
        }
    }

    // ---------------------------------------------------------------- receipts (docs/receipts.md)

    /** Why a receipt is refused: kind is malformed, not_canonical, unknown_algorithm, unknown_key,
     *  bad_signature or bad_proof. */
    static final class InvalidReceipt extends Exception {
        final String kind;

        InvalidReceipt(String kind, String message) {
            super(message);
            this.kind = kind;
        }
    }

    record Verified(String id, long seq, long size, String log, String kid) {}

    static final class Receipts {
        static final byte[] HEAD_DOMAIN = "mustcheck.tree_head.v1\n".getBytes(StandardCharsets.UTF_8);
        static final byte[] LEAF_DOMAIN = "mustcheck.leaf.v1\n".getBytes(StandardCharsets.UTF_8);
        static final List<String> ANSWER_FIELDS =
                List.of("at", "caller", "key", "matter", "measures", "outcome", "seq", "subject", "version");
        static final List<String> HEAD_FIELDS = List.of("alg", "at", "kid", "log", "root", "size");
        static final int HASH = 32;

        static Verified verify(String compact, Map<String, PublicKey> keys) throws InvalidReceipt {
            // 1. Four parts, the first "mcr2".
            String[] parts = compact.split("\\.", -1);
            if (parts.length != 4 || !parts[0].equals("mcr2")) {
                throw new InvalidReceipt("malformed", "not a receipt: expected mcr2.<payload>.<proof>.<signature>");
            }
            // 2. Each part strict unpadded base64url, in its one spelling.
            byte[] payload;
            byte[] proof;
            byte[] signature;
            try {
                payload = B64.strict(parts[1]);
                proof = B64.strict(parts[2]);
                signature = B64.strict(parts[3]);
            } catch (IllegalArgumentException error) {
                throw new InvalidReceipt("not_canonical", "a part is not unpadded base64url in its one spelling");
            }
            // 3. The payload canonical JSON holding exactly answer and head, each with exactly its fields.
            Object parsed;
            try {
                parsed = Json.parse(new String(payload, StandardCharsets.UTF_8));
            } catch (IllegalArgumentException error) {
                throw new InvalidReceipt("malformed", "the payload is not JSON: " + error.getMessage());
            }
            if (!(parsed instanceof Map<?, ?> data)
                    || !Arrays.equals(Json.canonical(data).getBytes(StandardCharsets.UTF_8), payload)) {
                throw new InvalidReceipt("not_canonical", "the payload is not canonical JSON");
            }
            if (!sameKeys(data, List.of("answer", "head"))
                    || !(data.get("answer") instanceof Map<?, ?> answer) || !sameKeys(answer, ANSWER_FIELDS)
                    || !(data.get("head") instanceof Map<?, ?> head) || !sameKeys(head, HEAD_FIELDS)) {
                throw new InvalidReceipt("malformed", "the payload must hold answer and head with their fields");
            }
            if (proof.length < HASH) {
                throw new InvalidReceipt("malformed", "the proof is shorter than the record hash");
            }
            if (!(head.get("size") instanceof BigInteger sizeValue) || !(answer.get("seq") instanceof BigInteger seqValue)
                    || !(head.get("root") instanceof String rootText) || !(head.get("kid") instanceof String kid)
                    || !(head.get("log") instanceof String log) || !(head.get("alg") instanceof Map<?, ?> alg)) {
                throw new InvalidReceipt("malformed", "the head's or answer's fields are not readable");
            }
            // 4. Known algorithms and key; the head's signature.
            if (!"sha256".equals(alg.get("hash")) || !"ed25519".equals(alg.get("sig")) || alg.size() != 2) {
                throw new InvalidReceipt("unknown_algorithm", "unknown algorithms " + Json.canonical(alg));
            }
            PublicKey key = keys.get(kid);
            if (key == null) {
                throw new InvalidReceipt("unknown_key", "signed with key " + kid + ", which is not a known key");
            }
            try {
                Signature verifier = Signature.getInstance("Ed25519");
                verifier.initVerify(key);
                verifier.update(concat(HEAD_DOMAIN, Json.canonical(head).getBytes(StandardCharsets.UTF_8)));
                if (!verifier.verify(signature)) {
                    throw new InvalidReceipt("bad_signature", "the tree head's signature does not match");
                }
            } catch (java.security.GeneralSecurityException error) {
                throw new InvalidReceipt("bad_signature", "the tree head's signature does not match");
            }
            // 5. The record hash, then whole 32-byte proof hashes.
            if ((proof.length - HASH) % HASH != 0) {
                throw new InvalidReceipt("bad_proof", "the inclusion proof is not a whole number of hashes");
            }
            String recordHash = hex(Arrays.copyOfRange(proof, 0, HASH));
            List<byte[]> path = new ArrayList<>();
            for (int at = HASH; at < proof.length; at += HASH) {
                path.add(Arrays.copyOfRange(proof, at, at + HASH));
            }
            // 6. The leaf, and the root its inclusion proof leads to, must be the signed root.
            Map<String, Object> leafObject = new TreeMap<>();
            leafObject.put("answer", answer);
            leafObject.put("record", recordHash);
            byte[] leaf = sha256(new byte[] {0}, LEAF_DOMAIN, Json.canonical(leafObject).getBytes(StandardCharsets.UTF_8));
            byte[] root;
            try {
                root = B64.strict(rootText);
            } catch (IllegalArgumentException error) {
                throw new InvalidReceipt("malformed", "the head's root is not unpadded base64url");
            }
            long seq = seqValue.longValueExact();
            long size = sizeValue.longValueExact();
            byte[] computed = seq < 1 ? null : rootFromInclusionProof(seq - 1, size, leaf, path);
            if (computed == null || !MessageDigest.isEqual(computed, root)) {
                throw new InvalidReceipt("bad_proof", "the inclusion proof does not lead to the signed root: record "
                        + seq + " is not proven in the tree of " + size + " records");
            }
            return new Verified(log + "-" + seq, seq, size, log, kid);
        }

        /** RFC 9162 §2.1.3.2: the root the proof leads to from leaf index in a tree of size leaves, or null. */
        static byte[] rootFromInclusionProof(long index, long size, byte[] leaf, List<byte[]> proof) {
            if (index < 0 || index >= size) {
                return null;
            }
            long position = index;
            long last = size - 1;
            byte[] root = leaf;
            for (byte[] sibling : proof) {
                if (last == 0) {
                    return null;
                }
                if ((position & 1) == 1 || position == last) {
                    root = sha256(new byte[] {1}, sibling, root);
                    while ((position & 1) == 0 && position != 0) {
                        position >>= 1;
                        last >>= 1;
                    }
                } else {
                    root = sha256(new byte[] {1}, root, sibling);
                }
                position >>= 1;
                last >>= 1;
            }
            return last == 0 ? root : null;
        }

        private static boolean sameKeys(Map<?, ?> map, List<String> names) {
            return map.size() == names.size() && map.keySet().containsAll(names);
        }
    }

    static byte[] sha256(byte[]... parts) {
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            for (byte[] part : parts) {
                digest.update(part);
            }
            return digest.digest();
        } catch (java.security.NoSuchAlgorithmException error) {
            throw new IllegalStateException(error);
        }
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] joined = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, joined, a.length, b.length);
        return joined;
    }

    static String hex(byte[] data) {
        StringBuilder text = new StringBuilder();
        for (byte b : data) {
            text.append(String.format("%02x", b & 0xff));
        }
        return text.toString();
    }

    /** Unpadded base64url, strictly: the one spelling of each byte string. */
    static final class B64 {
        static String encode(byte[] data) {
            return Base64.getUrlEncoder().withoutPadding().encodeToString(data);
        }

        static byte[] decode(String text) {
            return Base64.getUrlDecoder().decode(text);
        }

        static byte[] strict(String text) {
            if (text.length() % 4 == 1 || !text.chars().allMatch(c -> c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
                    || c >= '0' && c <= '9' || c == '-' || c == '_')) {
                throw new IllegalArgumentException("not unpadded base64url");
            }
            byte[] data = decode(text);
            if (!encode(data).equals(text)) {
                throw new IllegalArgumentException("unused bits set in the last character");
            }
            return data;
        }
    }

    // ---------------------------------------------------------------- a small JSON reader and writer

    /**
     * JSON values as Map (keys in document order), List, String, BigInteger (integers), Double (other
     * numbers), Boolean and null. canonical() writes what the gateway signs: keys sorted by code point, no
     * white space, UTF-8 text (only '"', '\\' and control characters escaped), integers as integers.
     */
    static final class Json {
        private final String text;
        private int at;

        private Json(String text) {
            this.text = text;
        }

        static Object parse(String text) {
            Json reader = new Json(text);
            reader.space();
            Object value = reader.value(0);
            reader.space();
            if (reader.at != text.length()) {
                throw new IllegalArgumentException("trailing characters at " + reader.at);
            }
            return value;
        }

        private Object value(int depth) {
            if (depth > 64) {
                throw new IllegalArgumentException("nested too deeply");
            }
            if (at >= text.length()) {
                throw new IllegalArgumentException("unexpected end");
            }
            char c = text.charAt(at);
            switch (c) {
                case '{': {
                    at++;
                    Map<String, Object> map = new LinkedHashMap<>();
                    space();
                    if (peek('}')) {
                        return map;
                    }
                    do {
                        space();
                        String key = string();
                        space();
                        expect(':');
                        space();
                        if (map.containsKey(key)) {
                            throw new IllegalArgumentException("duplicate key " + key);
                        }
                        map.put(key, value(depth + 1));
                        space();
                    } while (peek(','));
                    expect('}');
                    return map;
                }
                case '[': {
                    at++;
                    List<Object> list = new ArrayList<>();
                    space();
                    if (peek(']')) {
                        return list;
                    }
                    do {
                        space();
                        list.add(value(depth + 1));
                        space();
                    } while (peek(','));
                    expect(']');
                    return list;
                }
                case '"':
                    return string();
                case 't':
                    word("true");
                    return Boolean.TRUE;
                case 'f':
                    word("false");
                    return Boolean.FALSE;
                case 'n':
                    word("null");
                    return null;
                default:
                    return number();
            }
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                if (at >= text.length()) {
                    throw new IllegalArgumentException("unterminated string");
                }
                char c = text.charAt(at++);
                if (c == '"') {
                    return out.toString();
                }
                if (c < 0x20) {
                    throw new IllegalArgumentException("control character in a string");
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char escape = text.charAt(at++);
                switch (escape) {
                    case '"' -> out.append('"');
                    case '\\' -> out.append('\\');
                    case '/' -> out.append('/');
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'n' -> out.append('\n');
                    case 'r' -> out.append('\r');
                    case 't' -> out.append('\t');
                    case 'u' -> {
                        out.append((char) Integer.parseInt(text.substring(at, at + 4), 16));
                        at += 4;
                    }
                    default -> throw new IllegalArgumentException("bad escape \\" + escape);
                }
            }
        }

        private Object number() {
            int start = at;
            while (at < text.length() && "+-0123456789.eE".indexOf(text.charAt(at)) >= 0) {
                at++;
            }
            String literal = text.substring(start, at);
            if (literal.isEmpty()) {
                throw new IllegalArgumentException("unexpected character at " + start);
            }
            if (literal.matches("-?(0|[1-9][0-9]*)")) {
                return new BigInteger(literal);
            }
            return Double.valueOf(literal);
        }

        private void word(String expected) {
            if (!text.startsWith(expected, at)) {
                throw new IllegalArgumentException("unexpected text at " + at);
            }
            at += expected.length();
        }

        private boolean peek(char c) {
            if (at < text.length() && text.charAt(at) == c) {
                at++;
                return true;
            }
            return false;
        }

        private void expect(char c) {
            if (!peek(c)) {
                throw new IllegalArgumentException("expected '" + c + "' at " + at);
            }
        }

        private void space() {
            while (at < text.length() && " \t\r\n".indexOf(text.charAt(at)) >= 0) {
                at++;
            }
        }

        static String canonical(Object value) {
            StringBuilder out = new StringBuilder();
            write(value, out);
            return out.toString();
        }

        private static void write(Object value, StringBuilder out) {
            if (value == null) {
                out.append("null");
            } else if (value instanceof Map<?, ?> map) {
                List<String> keys = new ArrayList<>();
                for (Object key : map.keySet()) {
                    keys.add((String) key);
                }
                keys.sort(Json::compareCodePoints);
                out.append('{');
                for (int i = 0; i < keys.size(); i++) {
                    if (i > 0) {
                        out.append(',');
                    }
                    writeString(keys.get(i), out);
                    out.append(':');
                    write(map.get(keys.get(i)), out);
                }
                out.append('}');
            } else if (value instanceof List<?> list) {
                out.append('[');
                for (int i = 0; i < list.size(); i++) {
                    if (i > 0) {
                        out.append(',');
                    }
                    write(list.get(i), out);
                }
                out.append(']');
            } else if (value instanceof String string) {
                writeString(string, out);
            } else if (value instanceof Boolean || value instanceof BigInteger || value instanceof Integer
                    || value instanceof Long) {
                out.append(value);
            } else if (value instanceof Double number) {
                out.append(number);  // no receipt field is a fraction: a payload holding one is refused
            } else {
                throw new IllegalArgumentException("not a JSON value: " + value.getClass());
            }
        }

        private static void writeString(String string, StringBuilder out) {
            out.append('"');
            for (int i = 0; i < string.length(); i++) {
                char c = string.charAt(i);
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    case '\b' -> out.append("\\b");
                    case '\f' -> out.append("\\f");
                    default -> {
                        if (c < 0x20) {
                            out.append(String.format("\\u%04x", (int) c));
                        } else {
                            out.append(c);
                        }
                    }
                }
            }
            out.append('"');
        }

        private static int compareCodePoints(String a, String b) {
            int i = 0;
            int j = 0;
            while (i < a.length() && j < b.length()) {
                int x = a.codePointAt(i);
                int y = b.codePointAt(j);
                if (x != y) {
                    return Integer.compare(x, y);
                }
                i += Character.charCount(x);
                j += Character.charCount(y);
            }
            return Integer.compare(a.length() - i, b.length() - j);
        }
    }
}
