package bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;

/**
 * Tumbling 1-minute count per merchant (the input's key), 5 s of grace, event time from {@code ts},
 * one final result per window (suppress until the window closes: the engine's {@code emit: on_close}).
 * Results as the engine writes them: {merchant_id, window_start, window_end, txn_count}.
 */
final class WindowApp {
    static final Duration SIZE = Duration.ofMinutes(1);
    static final Duration GRACE = Duration.ofSeconds(5);

    private WindowApp() {}

    static Topology topology() {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(Env.get("BENCH_INPUT_TOPIC"),
                Consumed.with(Serdes.String(), Json.serde()).withTimestampExtractor(Json.EVENT_TIME))
            .groupByKey(Grouped.with(Serdes.String(), Json.serde()))
            .windowedBy(TimeWindows.ofSizeAndGrace(SIZE, GRACE))
            .count()
            .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
            .toStream()
            .map((window, count) -> {
                ObjectNode out = Json.MAPPER.createObjectNode();
                out.put("merchant_id", window.key());
                out.put("window_start", window.window().start());
                out.put("window_end", window.window().end());
                out.put("txn_count", count);
                return KeyValue.pair(window.key(), (JsonNode) out);
            })
            .to(Env.get("BENCH_OUTPUT_TOPIC"), Produced.with(Serdes.String(), Json.serde()));
        return builder.build();
    }
}
