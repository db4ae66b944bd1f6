// llama.cpp's own numbers for a GGUF file, through node-llama-cpp's prebuilt llama.cpp (npm; issue 45).
//
//   node tools/llama-cpp/llama.mjs MODEL.gguf REQUEST.json      -> one JSON object on stdout
//
// REQUEST: {"windows": [[token id, ...], ...], "generate": {"prompt": [token id, ...], "tokens": 32, "repeats": 3},
//           "threads": 2, "context": 512}   (every part optional)
// OUTPUT:  {"block_count", "architecture", "load_seconds",
//           "nll": [nats summed over each window's tokens 2..T], "predicted": [tokens scored per window],
//           "generate": {"ids": [greedy ids], "seconds": [per repeat], "tokens_per_second": median over repeats}}
// Decode speed: after one untimed warm-up, each repeat evaluates the prompt and then times the greedy tokens
// only (the prompt's evaluation is not in it), "tokens" of them, end-of-text tokens included.
// Token ids, not text, go in and out, so llama.cpp and transformers score the same tokens.
import {readFileSync} from "node:fs";
import {getLlama} from "node-llama-cpp";

const [modelPath, requestPath] = process.argv.slice(2);
if (!modelPath || !requestPath) {
    console.error("usage: node llama.mjs MODEL.gguf REQUEST.json");
    process.exit(2);
}
const request = JSON.parse(readFileSync(requestPath, "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
let t = performance.now();
const model = await llama.loadModel({modelPath});
const out = {load_seconds: (performance.now() - t) / 1000};
const metadata = model.fileInfo.metadata;
out.architecture = metadata.general.architecture;
out.block_count = metadata[out.architecture].block_count;
const context = await model.createContext({contextSize: request.context ?? 512, threads: request.threads ?? 2});
const sequence = context.getSequence();

if (request.windows) {
    out.nll = [];
    out.predicted = [];
    for (const window of request.windows) {
        await sequence.clearHistory();
        const input = window.map((id, i) => i < window.length - 1 ? [id, {generateNext: {probabilities: true}}] : id);
        const result = await sequence.controlledEvaluate(input);
        let nll = 0;
        for (let i = 0; i < window.length - 1; i++) nll -= Math.log(result[i].next.probabilities.get(window[i + 1]));
        out.nll.push(nll);
        out.predicted.push(window.length - 1);
    }
}
async function greedy(prompt, tokens) {
    await sequence.clearHistory();
    const ids = [];
    let start = null;
    for await (const id of sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
        if (start === null) start = performance.now();  // the first token ends the prompt's evaluation
        ids.push(id);
        if (ids.length >= tokens) break;  // past an end-of-text token too: every model decodes as many tokens
    }
    return {ids, seconds: (performance.now() - start) / 1000};
}

if (request.generate) {
    const {prompt, tokens} = request.generate;
    await greedy(prompt, tokens);  // warm-up
    const runs = [];
    for (let r = 0; r < (request.generate.repeats ?? 3); r++) runs.push(await greedy(prompt, tokens));
    const rates = runs.map(x => (x.ids.length - 1) / x.seconds).sort((a, b) => a - b);
    out.generate = {ids: runs[0].ids, seconds: runs.map(x => x.seconds), tokens_per_second: rates[rates.length >> 1]};
}
console.log(JSON.stringify(out));
await context.dispose();
await model.dispose();
