package bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/** Forwarding: each JSON record with {@code forwarded: true} added, as the other forward contenders. */
final class ForwardApp {
    private ForwardApp() {}

    static Topology topology() {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(Env.get("BENCH_INPUT_TOPIC"), Consumed.with(Serdes.ByteArray(), Json.serde()))
            .mapValues(ForwardApp::forwarded)
            .to(Env.get("BENCH_OUTPUT_TOPIC"), Produced.with(Serdes.ByteArray(), Json.serde()));
        return builder.build();
    }

    static JsonNode forwarded(JsonNode value) {
        if (value instanceof ObjectNode obj) {
            obj.put("forwarded", true);
        }
        return value;
    }
}
