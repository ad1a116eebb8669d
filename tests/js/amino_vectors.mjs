// Writes tests/vectors/amino_vectors.json: SIGN_MODE_LEGACY_AMINO_JSON sign documents and
// signed transactions made by cosmjs itself (the versions pinned in package.json, 0.39.0), so
// that the node's amino verification is checked against another implementation, not against
// our own encoder.
//
//     cd tests/js && npm ci && node amino_vectors.mjs
import { writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import {
  Secp256k1HdWallet,
  makeSignDoc,
  serializeSignDoc,
} from "@cosmjs/amino";
import { Bip39, EnglishMnemonic, Secp256k1, Slip10, Slip10Curve, stringToPath } from "@cosmjs/crypto";
import { toBase64, toHex } from "@cosmjs/encoding";
import { DirectSecp256k1HdWallet } from "@cosmjs/proto-signing";
import { SigningStargateClient } from "@cosmjs/stargate";
import { TxRaw } from "cosmjs-types/cosmos/tx/v1beta1/tx";

const MNEMONIC =
  "economy stock theory fatal elder harbor betray wasp final emotion task crumble siren " +
  "bottom lizard educate guess current outdoor pair theory focus wife stone";
const PATH = "m/44'/1200'/0'/0/0";
const PREFIX = "gonka";
const RECIPIENT = "gonka1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc50htqp7";

const seed = await Bip39.mnemonicToSeed(new EnglishMnemonic(MNEMONIC));
const { privkey } = Slip10.derivePath(Slip10Curve.Secp256k1, seed, stringToPath(PATH));
const pubkey = Secp256k1.compressPubkey((await Secp256k1.makeKeypair(privkey)).pubkey);
const amino = await Secp256k1HdWallet.fromMnemonic(MNEMONIC, {
  hdPaths: [stringToPath(PATH)],
  prefix: PREFIX,
});
const direct = await DirectSecp256k1HdWallet.fromMnemonic(MNEMONIC, {
  hdPaths: [stringToPath(PATH)],
  prefix: PREFIX,
});
const [{ address }] = await amino.getAccounts();

function send(amount) {
  return {
    type: "cosmos-sdk/MsgSend",
    value: { from_address: address, to_address: RECIPIENT, amount },
  };
}

const coin = (amount, denom = "ngonka") => ({ denom, amount });
const docCases = [
  ["plain", [send([coin("12345")])], { amount: [coin("2000")], gas: "200000" }, "", 7, 3],
  ["escaped-memo", [send([coin("1")])], { amount: [coin("1")], gas: "1" }, "a<b>&c é ✓", 0, 0],
  [
    "two-coins-two-msgs",
    [send([coin("5", "ibc/ABC"), coin("6")]), send([coin("18446744073709551617")])],
    { amount: [], gas: "90000" },
    "two",
    123456789,
    42,
  ],
  ["no-fee-amount", [send([coin("3")])], { amount: [], gas: "0" }, "", 1, 0],
];

const signDocs = [];
for (const [name, msgs, fee, memo, accountNumber, sequence] of docCases) {
  const doc = makeSignDoc(msgs, fee, "gonka-devnet", memo, accountNumber, sequence);
  const bytes = serializeSignDoc(doc);
  const { signature } = await amino.signAmino(address, doc);
  signDocs.push({
    name,
    sign_doc: doc,
    serialized: new TextDecoder().decode(bytes),
    sha256_hex: createHash("sha256").update(bytes).digest("hex"),
    signature_b64: signature.signature,
  });
}

// Whole transactions as SigningStargateClient.sign builds them offline. The node's test
// genesis funds `address` as account number 1 (the faucet is 0) on gonka-devnet.
const signerData = { accountNumber: 1, sequence: 0, chainId: "gonka-devnet" };
const txMsg = {
  typeUrl: "/cosmos.bank.v1beta1.MsgSend",
  value: { fromAddress: address, toAddress: RECIPIENT, amount: [coin("4321")] },
};
const txFee = { amount: [coin("20000")], gas: "200000" };
const txs = [];
for (const [mode, wallet] of [
  ["amino", amino],
  ["direct", direct],
]) {
  const client = await SigningStargateClient.offline(wallet);
  const raw = await client.sign(address, [txMsg], txFee, "cosmjs <&>", signerData);
  const bytes = TxRaw.encode(raw).finish();
  txs.push({
    mode,
    ...signerData,
    memo: "cosmjs <&>",
    amount_ngonka: "4321",
    fee_ngonka: "20000",
    gas: "200000",
    tx_bytes_b64: toBase64(bytes),
    txhash: toHex(createHash("sha256").update(bytes).digest()).toUpperCase(),
  });
}

const out = {
  source: "cosmjs 0.39.0 (@cosmjs/amino, @cosmjs/stargate), tests/js/amino_vectors.mjs",
  mnemonic: MNEMONIC,
  hd_path: PATH,
  private_key_hex: toHex(privkey),
  public_key_b64: toBase64(pubkey),
  address,
  recipient: RECIPIENT,
  sign_docs: signDocs,
  txs,
};
const target = new URL("../vectors/amino_vectors.json", import.meta.url);
writeFileSync(target, JSON.stringify(out, null, 1) + "\n");
console.log(`wrote ${signDocs.length} sign docs and ${txs.length} txs`);
