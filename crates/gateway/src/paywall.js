// The paywall's "Pay with wallet" button, inlined into the 402 page by paywall.rs.
// Why it exists: a person who meets a 402 in a browser can pay it with the wallet the
// browser already has (EIP-1193, window.ethereum), without installing anything. It
// signs an EIP-3009 TransferWithAuthorization for the chosen requirement, retries the
// same URL with the v2 PAYMENT-SIGNATURE header and shows the answer and the receipt.
// Everything it writes into the page goes through textContent, never HTML; the page's
// Content-Security-Policy allows this script by its hash only.
(function () {
  "use strict";
  var root = document.getElementById("x402-wallet");
  if (!root) return;
  var status = document.getElementById("x402-status");
  var buttons = Array.prototype.slice.call(root.querySelectorAll("button[data-accept]"));
  // The longest an authorization signed here stays valid, as agora pay signs.
  var MAX_VALIDITY_SECONDS = 600;
  // validAfter lies this far in the past, so a wallet clock ahead of the chain's works.
  var VALID_AFTER_SKEW_SECONDS = 600;

  root.hidden = false;
  var eth = window.ethereum;
  if (!eth || typeof eth.request !== "function") {
    document.getElementById("x402-no-wallet").hidden = false;
    return;
  }

  function say(text) {
    status.textContent = text;
  }

  function fromBase64(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  function toBase64(value) {
    var bytes = new TextEncoder().encode(JSON.stringify(value));
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary);
  }

  function randomNonce() {
    var bytes = crypto.getRandomValues(new Uint8Array(32));
    var hex = "0x";
    for (var i = 0; i < bytes.length; i++) hex += bytes[i].toString(16).padStart(2, "0");
    return hex;
  }

  function chainIdOf(network) {
    var m = /^eip155:(\d+)$/.exec(network);
    if (!m) throw new Error("network " + network + " is not an EVM chain this page can pay on");
    return Number(m[1]);
  }

  function typedData(accepted, chainId, authorization) {
    return {
      types: {
        EIP712Domain: [
          { name: "name", type: "string" },
          { name: "version", type: "string" },
          { name: "chainId", type: "uint256" },
          { name: "verifyingContract", type: "address" },
        ],
        TransferWithAuthorization: [
          { name: "from", type: "address" },
          { name: "to", type: "address" },
          { name: "value", type: "uint256" },
          { name: "validAfter", type: "uint256" },
          { name: "validBefore", type: "uint256" },
          { name: "nonce", type: "bytes32" },
        ],
      },
      primaryType: "TransferWithAuthorization",
      domain: {
        name: accepted.extra.name,
        version: accepted.extra.version,
        chainId: chainId,
        verifyingContract: accepted.asset,
      },
      message: authorization,
    };
  }

  function walletError(e) {
    if (e && e.code === 4001) return "You declined in the wallet; nothing was signed or paid.";
    return "The payment did not happen: " + ((e && e.message) || String(e));
  }

  // Why the server refused, from the fresh PAYMENT-REQUIRED of a 402 or a JSON body.
  function reasonOf(response, body) {
    var header = response.headers.get("PAYMENT-REQUIRED");
    try {
      if (header) return fromBase64(header).error || "";
    } catch (ignored) {
      // Not a readable challenge; fall back to the body.
    }
    try {
      var parsed = JSON.parse(body);
      return (parsed.error && (parsed.error.message || parsed.error)) || parsed.message || "";
    } catch (ignored) {
      return body.slice(0, 300);
    }
  }

  async function pay(required, accepted) {
    var chainId = chainIdOf(accepted.network);
    say("Asking your wallet for an account\u2026");
    var accounts = await eth.request({ method: "eth_requestAccounts" });
    var from = accounts && accounts[0];
    if (!from) throw new Error("the wallet shared no account");
    var current = parseInt(await eth.request({ method: "eth_chainId" }), 16);
    if (current !== chainId) {
      say("Asking your wallet to switch to chain " + chainId + "\u2026");
      await eth.request({
        method: "wallet_switchEthereumChain",
        params: [{ chainId: "0x" + chainId.toString(16) }],
      });
    }
    var now = Math.floor(Date.now() / 1000);
    var timeout = Number(accepted.maxTimeoutSeconds) || MAX_VALIDITY_SECONDS;
    var authorization = {
      from: from,
      to: accepted.payTo,
      value: String(accepted.amount),
      validAfter: String(Math.max(0, now - VALID_AFTER_SKEW_SECONDS)),
      validBefore: String(now + Math.min(timeout, MAX_VALIDITY_SECONDS)),
      nonce: randomNonce(),
    };
    say("Confirm the payment in your wallet\u2026");
    var signature = await eth.request({
      method: "eth_signTypedData_v4",
      params: [from, JSON.stringify(typedData(accepted, chainId, authorization))],
    });
    var payment = {
      x402Version: 2,
      resource: required.resource,
      accepted: accepted,
      payload: { signature: signature, authorization: authorization },
    };
    say("Paying\u2026");
    var response = await fetch(location.href, {
      headers: { "PAYMENT-SIGNATURE": toBase64(payment) },
      cache: "no-store",
      credentials: "same-origin",
    });
    var body = await response.text();
    var receiptHeader = response.headers.get("PAYMENT-RESPONSE");
    var receipt = null;
    try {
      receipt = receiptHeader ? fromBase64(receiptHeader) : null;
    } catch (ignored) {
      receipt = null;
    }
    if (!response.ok) {
      say(
        "The service answered " + response.status + ": " + reasonOf(response, body) +
          (receipt && receipt.transaction ? "" : " No receipt came back.")
      );
      return;
    }
    document.getElementById("x402-answer").textContent = body;
    document.getElementById("x402-tx").textContent =
      receipt && receipt.transaction ? receipt.transaction : "(no receipt header)";
    document.getElementById("x402-result").hidden = false;
    say("Paid. The answer is below.");
  }

  var required;
  try {
    required = fromBase64(root.getAttribute("data-payment-required"));
  } catch (e) {
    say("This page's payment requirements are unreadable; pay from a terminal instead.");
    return;
  }
  buttons.forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var accepted = required.accepts[Number(button.getAttribute("data-accept"))];
      buttons.forEach(function (b) {
        b.disabled = true;
      });
      pay(required, accepted)
        .catch(function (e) {
          say(walletError(e));
        })
        .then(function () {
          buttons.forEach(function (b) {
            b.disabled = false;
          });
        });
    });
  });
})();
