package bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;

/**
 * Reconciliation (topologies/reconciliation.yaml): payments left-joined with settlements by
 * payment_id on event time, a settlement up to 5 min before to 30 min after its payment, 1 min of
 * grace. Kafka Streams (since 3.1) emits a left join's unmatched record only once the window has
 * closed, so "no settlement within the bound" is its own output. Routes as the topology's.
 */
final class JoinApp {
    static final String[] FIELDS = {"settlement_id", "amount", "currency", "ts"};

    private JoinApp() {}

    static Topology topology() {
        StreamsBuilder builder = new StreamsBuilder();
        Consumed<String, JsonNode> consumed =
            Consumed.with(Serdes.String(), Json.serde()).withTimestampExtractor(Json.EVENT_TIME);
        KStream<String, JsonNode> payments = builder.stream(Env.get("BENCH_INPUT_TOPIC"), consumed);
        KStream<String, JsonNode> settlements = builder.stream(Env.get("BENCH_SETTLEMENTS_TOPIC"), consumed);
        JoinWindows window = JoinWindows.ofTimeDifferenceAndGrace(Duration.ofMinutes(30), Duration.ofMinutes(1))
            .before(Duration.ofMinutes(5));
        Produced<String, JsonNode> produced = Produced.with(Serdes.String(), Json.serde());
        payments
            .leftJoin(settlements, JoinApp::merge, window, StreamJoined.with(Serdes.String(), Json.serde(), Json.serde()))
            .split()
            .branch((key, value) -> "unmatched".equals(value.path("join_status").asText()),
                Branched.withConsumer(s -> s.to(Env.get("BENCH_UNRECONCILED_TOPIC"), produced)))
            .branch((key, value) -> value.has("mismatch"),
                Branched.withConsumer(s -> s.to(Env.get("BENCH_MISMATCH_TOPIC"), produced)))
            .defaultBranch(Branched.withConsumer(s -> s.to(Env.get("BENCH_RECONCILED_TOPIC"), produced)));
        return builder.build();
    }

    /** The joined record: unmatched ones with their severity, a mismatch says which. */
    static JsonNode merge(JsonNode payment, JsonNode settlement) {
        ObjectNode out = payment.deepCopy();
        if (settlement == null) {
            out.put("join_status", "unmatched");
            double amount = payment.path("amount").asDouble();
            out.put("severity", amount >= 10_000 ? "critical" : amount >= 1_000 ? "high" : "low");
            return out;
        }
        for (String f : FIELDS) {
            out.set("settled_" + f, settlement.get(f));
        }
        out.put("join_status", "matched");
        if (!payment.path("currency").asText().equals(settlement.path("currency").asText())) {
            out.put("mismatch", "currency");
            return out;
        }
        if (Math.abs(payment.path("amount").asDouble() - settlement.path("amount").asDouble()) >= 0.005) {
            out.put("mismatch", "amount");
            return out;
        }
        return out;
    }
}
