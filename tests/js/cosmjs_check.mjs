// cosmjs (from npm) against a running gonka node, one case per run:
//
//   node cosmjs_check.mjs <case> <rpc url> <mnemonic> <recipient>
//
// Cases: queries | direct | amino | websocket. Prints one JSON object with what cosmjs saw; exits 1
// with {"error": ...} when cosmjs throws. tests/node/test_cosmjs.py runs it and checks the
// answers against the node's ledger.
import { Secp256k1HdWallet } from "@cosmjs/amino";
import { stringToPath } from "@cosmjs/crypto";
import { DirectSecp256k1HdWallet } from "@cosmjs/proto-signing";
import { GasPrice, SigningStargateClient, StargateClient } from "@cosmjs/stargate";
import { Comet38Client, WebsocketClient } from "@cosmjs/tendermint-rpc";

const [kind, rpcUrl, mnemonic, recipient] = process.argv.slice(2);
const options = { prefix: "gonka", hdPaths: [stringToPath("m/44'/1200'/0'/0/0")] };
const DENOM = "ngonka";

function plain(value) {
  return JSON.parse(
    JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v)),
  );
}

async function queries() {
  const client = await StargateClient.connect(rpcUrl);
  const wallet = await DirectSecp256k1HdWallet.fromMnemonic(mnemonic, options);
  const [{ address }] = await wallet.getAccounts();
  const height = await client.getHeight();
  const block = await client.getBlock();
  const first = await client.getBlock(1);
  const out = {
    chainId: await client.getChainId(),
    height,
    address,
    balance: await client.getBalance(address, DENOM),
    allBalances: await client.getAllBalances(address),
    account: await client.getAccount(address),
    missingAccount: await client.getAccount(recipient),
    block: { height: block.header.height, hash: block.id, txs: block.txs.length, chainId: block.header.chainId },
    firstBlock: { height: first.header.height, hash: first.id },
  };
  client.disconnect();
  return out;
}

async function send(signerKind) {
  const wallet =
    signerKind === "amino"
      ? await Secp256k1HdWallet.fromMnemonic(mnemonic, options)
      : await DirectSecp256k1HdWallet.fromMnemonic(mnemonic, options);
  const [{ address }] = await wallet.getAccounts();
  const client = await SigningStargateClient.connectWithSigner(rpcUrl, wallet, {
    gasPrice: GasPrice.fromString(`0.1${DENOM}`),
  });
  const amount = [{ denom: DENOM, amount: "1234" }];
  const msg = { typeUrl: "/cosmos.bank.v1beta1.MsgSend", value: { fromAddress: address, toAddress: recipient, amount } };
  const gasSimulated = await client.simulate(address, [msg], `cosmjs ${signerKind}`);
  const before = await client.getBalance(recipient, DENOM);
  const result = await client.signAndBroadcast(address, [msg], "auto", `cosmjs ${signerKind}`);
  const tx = await client.getTx(result.transactionHash);
  const bySender = await client.searchTx([{ key: "message.sender", value: address }]);
  const after = await client.getBalance(recipient, DENOM);
  client.disconnect();
  return {
    address,
    gasSimulated,
    code: result.code,
    rawLog: result.rawLog,
    height: result.height,
    txhash: result.transactionHash,
    gasWanted: result.gasWanted,
    gasUsed: result.gasUsed,
    events: result.events,
    msgResponses: result.msgResponses,
    getTx: tx && { hash: tx.hash, height: tx.height, code: tx.code },
    bySender: bySender.map((t) => t.hash),
    received: (BigInt(after.amount) - BigInt(before.amount)).toString(),
  };
}

/** The first event of an xstream stream (cosmjs's subscriptions). */
function first(stream) {
  return new Promise((resolve, reject) => {
    const listener = {
      next: (value) => {
        stream.removeListener(listener);
        resolve(value);
      },
      error: (error) => reject(new Error(String(error))),
      complete: () => reject(new Error("the subscription ended")),
    };
    stream.addListener(listener);
  });
}

async function websocket() {
  const wallet = await DirectSecp256k1HdWallet.fromMnemonic(mnemonic, options);
  const [{ address }] = await wallet.getAccounts();
  const socket = new WebsocketClient(rpcUrl.replace(/^http/, "ws"), (error) => {
    console.log(JSON.stringify({ error: `websocket: ${error}` }));
    process.exit(1);
  });
  const comet = Comet38Client.create(socket);
  const block = await first(comet.subscribeNewBlock());
  const txEvent = first(comet.subscribeTx(`message.sender='${address}'`));
  const client = await SigningStargateClient.connectWithSigner(rpcUrl, wallet, {
    gasPrice: GasPrice.fromString(`0.1${DENOM}`),
  });
  const amount = [{ denom: DENOM, amount: "55" }];
  const msg = { typeUrl: "/cosmos.bank.v1beta1.MsgSend", value: { fromAddress: address, toAddress: recipient, amount } };
  const result = await client.signAndBroadcast(address, [msg], "auto", "cosmjs websocket");
  const event = await txEvent;
  client.disconnect();
  comet.disconnect();
  return {
    block: { height: block.header.height, chainId: block.header.chainId, txs: block.txs.length },
    tx: {
      hash: Buffer.from(event.hash).toString("hex").toUpperCase(),
      height: event.height,
      code: event.result.code,
      events: event.result.events.map((e) => e.type),
    },
    broadcast: { hash: result.transactionHash, height: result.height, code: result.code },
  };
}

try {
  const cases = { queries, direct: () => send("direct"), amino: () => send("amino"), websocket };
  if (!(kind in cases)) throw new Error(`unknown case ${kind}`);
  const answer = JSON.stringify(plain(await cases[kind]()));
  // Exit once written: an open websocket would keep node running.
  process.stdout.write(answer + "\n", () => process.exit(0));
} catch (error) {
  console.log(JSON.stringify({ error: String(error && error.stack ? error.stack : error) }));
  process.exit(1);
}
