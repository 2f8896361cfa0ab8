package bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.processor.TimestampExtractor;

/** JSON values as Jackson trees, and event time from their {@code ts} field. */
final class Json {
    static final ObjectMapper MAPPER = new ObjectMapper();

    private Json() {}

    static JsonNode parse(byte[] bytes) throws IOException {
        return MAPPER.readTree(bytes);
    }

    static Serde<JsonNode> serde() {
        Serializer<JsonNode> ser = (topic, node) -> {
            try {
                return node == null ? null : MAPPER.writeValueAsBytes(node);
            } catch (IOException e) {
                throw new SerializationException(e);
            }
        };
        Deserializer<JsonNode> de = (topic, bytes) -> {
            try {
                return bytes == null ? null : MAPPER.readTree(bytes);
            } catch (IOException e) {
                throw new SerializationException(e);
            }
        };
        return Serdes.serdeFrom(ser, de);
    }

    /** Event time: the value's {@code ts} (epoch ms), else the record's timestamp. */
    static final TimestampExtractor EVENT_TIME = (record, partitionTime) -> {
        if (record.value() instanceof JsonNode node && node.path("ts").isNumber()) {
            return node.get("ts").asLong();
        }
        return record.timestamp();
    };
}
