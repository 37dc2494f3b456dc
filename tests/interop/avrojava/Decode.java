// Decodes ledgerstream records with Apache Avro's own BinaryMessageDecoder (single-object
// encoding), so a test can check our wire bytes against a decoder nobody here wrote.
//
//   java -cp '<avro jars>/*' Decode.java <schemas dir> <input file>
//
// The input has one record per line, "<RecordName> <hex>". The output has, first, one line
// "fingerprint <RecordName> <hex>" per schema (SchemaNormalization.parsingFingerprint64 as
// the 8 little-endian header bytes), then one JSON line per input record: the decoded
// record (bytes and fixed as hex) or {"error": "<exception class>"}.
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.avro.AvroRuntimeException;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericEnumSymbol;
import org.apache.avro.generic.GenericFixed;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;

public class Decode {
    public static void main(String[] args) throws Exception {
        Map<String, Schema> schemas = parseAll(Path.of(args[0]));
        ObjectMapper json = new ObjectMapper();
        HexFormat hex = HexFormat.of();
        for (Map.Entry<String, Schema> e : new TreeMap<>(schemas).entrySet()) {
            ByteBuffer fp = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            fp.putLong(SchemaNormalization.parsingFingerprint64(e.getValue()));
            System.out.println("fingerprint " + e.getKey() + " " + hex.formatHex(fp.array()));
        }
        for (String line : Files.readAllLines(Path.of(args[1]))) {
            if (line.isBlank()) continue;
            String[] parts = line.trim().split(" ");
            BinaryMessageDecoder<GenericRecord> decoder =
                new BinaryMessageDecoder<>(GenericData.get(), schemas.get(parts[0]));
            Object out;
            try {
                out = plain(decoder.decode(hex.parseHex(parts[1])));
            } catch (Exception ex) {
                out = Map.of("error", ex.getClass().getSimpleName());
            }
            System.out.println(json.writeValueAsString(out));
        }
    }

    /** Every .avsc in the folder, parsed in an order in which each file's references resolve. */
    static Map<String, Schema> parseAll(Path dir) throws Exception {
        List<Path> pending = new ArrayList<>();
        try (var files = Files.list(dir)) {
            files.filter(p -> p.toString().endsWith(".avsc")).sorted().forEach(pending::add);
        }
        List<Path> order = new ArrayList<>();
        while (!pending.isEmpty()) {
            boolean progressed = false;
            for (Path candidate : new ArrayList<>(pending)) {
                Schema.Parser parser = new Schema.Parser();
                try {
                    for (Path done : order) parser.parse(done.toFile());
                    parser.parse(candidate.toFile());
                } catch (AvroRuntimeException unresolved) {  // a reference to a type not parsed yet
                    continue;
                }
                order.add(candidate);
                pending.remove(candidate);
                progressed = true;
            }
            if (!progressed) throw new IllegalStateException("unresolvable schemas " + pending);
        }
        Schema.Parser parser = new Schema.Parser();
        Map<String, Schema> out = new LinkedHashMap<>();
        for (Path p : order) {
            Schema s = parser.parse(p.toFile());
            out.put(s.getName(), s);
        }
        return out;
    }

    /** The decoded value as plain JSON types: bytes and fixed as lowercase hex. */
    static Object plain(Object v) {
        if (v instanceof GenericRecord r) {
            Map<String, Object> m = new LinkedHashMap<>();
            for (Schema.Field f : r.getSchema().getFields()) m.put(f.name(), plain(r.get(f.pos())));
            return m;
        }
        if (v instanceof ByteBuffer b) {
            byte[] copy = new byte[b.remaining()];
            b.duplicate().get(copy);
            return HexFormat.of().formatHex(copy);
        }
        if (v instanceof GenericFixed f) return HexFormat.of().formatHex(f.bytes());
        if (v instanceof CharSequence || v instanceof GenericEnumSymbol) return v.toString();
        if (v instanceof List<?> l) {
            List<Object> out = new ArrayList<>();
            for (Object x : l) out.add(plain(x));
            return out;
        }
        if (v instanceof Map<?, ?> m) {
            Map<String, Object> out = new LinkedHashMap<>();
            for (Map.Entry<?, ?> e : m.entrySet()) out.put(e.getKey().toString(), plain(e.getValue()));
            return out;
        }
        return v;  // null, Boolean, Integer, Long, Float, Double
    }
}
