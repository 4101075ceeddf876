// Emporium storefront: vanilla JavaScript over the gateway's JSON API.
// No build step and no third-party code. Views are rendered with DOM calls
// (never innerHTML with data), routed by the URL fragment:
//   #/                  product list
//   #/products/{id}     one product and its recommendations
//   #/cart              the cart and the checkout form
//   #/orders/{id}       an order, polled until fraud checking decided it
"use strict";

(() => {
  const CART_KEY = "emporium.cart";
  const CUSTOMER_KEY = "emporium.customer";
  const ATTEMPT_KEY = "emporium.checkout-attempt";
  const NAMES_KEY = "emporium.product-names";
  const POLL_INTERVAL_MS = 1000;
  const RETRYABLE = new Set([0, 500, 502, 503, 504]);

  const view = document.getElementById("view");
  const errorBanner = document.querySelector('[data-testid="error-message"]');
  const errorText = document.querySelector('[data-testid="error-text"]');
  const errorFields = document.querySelector('[data-testid="error-fields"]');
  const notice = document.querySelector('[data-testid="notice"]');
  const cartCount = document.querySelector('[data-testid="cart-count"]');

  // Every render bumps the generation; work started for an older view stops.
  let generation = 0;

  // ---- small utilities ---------------------------------------------------

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "class") node.className = value;
      else if (name === "testid") node.dataset.testid = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fractionDigits(currency) {
    try {
      return new Intl.NumberFormat("en", { style: "currency", currency })
        .resolvedOptions().maximumFractionDigits;
    } catch {
      return 2;
    }
  }

  function formatMoney(money) {
    if (!money) return "–";
    const digits = fractionDigits(money.currency_code);
    const amount = money.amount_minor / 10 ** digits;
    try {
      return new Intl.NumberFormat(undefined, {
        style: "currency", currency: money.currency_code,
      }).format(amount);
    } catch {
      return `${amount.toFixed(digits)} ${money.currency_code}`;
    }
  }

  function priceElement(money, testid) {
    return el("span", {
      class: "price", testid,
      "data-amount-minor": money ? money.amount_minor : null,
      "data-currency": money ? money.currency_code : null,
    }, formatMoney(money));
  }

  function stockElement(product, prefix = "product") {
    if (!product.in_stock) {
      return el("span", { class: "out-of-stock", testid: "out-of-stock" }, "Out of stock");
    }
    return el("span", { class: "stock", testid: `${prefix}-stock`,
      "data-stock": product.stock_available }, `${product.stock_available} in stock`);
  }

  function newIdempotencyKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // randomUUID needs a secure context (HTTPS or localhost); getRandomValues does not.
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  // ---- API -----------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, fields) {
      super(message);
      this.status = status;
      this.code = code;
      this.fields = fields || [];
    }

    get retryable() {
      return RETRYABLE.has(this.status);
    }
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, {
        ...options,
        headers: { Accept: "application/json", ...(options.headers || {}) },
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "network",
        "Cannot reach the shop right now. Check your connection and try again.", []);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const error = (body && body.error) || {};
      throw new ApiError(response.status, error.code || "internal",
        error.message || `The shop answered with HTTP ${response.status}.`, error.fields);
    }
    return { status: response.status, body };
  }

  // ---- banners -------------------------------------------------------------

  function showError(error) {
    errorText.textContent = error.message || String(error);
    errorFields.replaceChildren(...(error.fields || []).map((f) =>
      el("li", { testid: "error-field", "data-field": f.field }, `${f.field}: ${f.description}`)));
    errorBanner.hidden = false;
  }

  function clearError() {
    errorBanner.hidden = true;
    errorText.textContent = "";
    errorFields.replaceChildren();
  }

  let noticeTimer = null;
  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { notice.hidden = true; }, 4000);
  }

  document.querySelector('[data-testid="error-dismiss"]').addEventListener("click", clearError);

  // ---- cart (kept in localStorage) -----------------------------------------

  function loadCart() {
    try {
      const items = JSON.parse(localStorage.getItem(CART_KEY) || "[]");
      return Array.isArray(items) ? items : [];
    } catch {
      return [];
    }
  }

  function saveCart(items) {
    localStorage.setItem(CART_KEY, JSON.stringify(items));
    updateCartCount();
  }

  function updateCartCount() {
    cartCount.textContent = String(loadCart().reduce((n, item) => n + item.quantity, 0));
  }

  function addToCart(product, quantity) {
    const items = loadCart();
    const existing = items.find((item) => item.product_id === product.product_id);
    if (existing) existing.quantity += quantity;
    else items.push({ product_id: product.product_id, name: product.name,
      price: product.price, quantity });
    saveCart(items);
  }

  // ---- views ---------------------------------------------------------------

  function setView(title, ...children) {
    document.title = title ? `${title} · Emporium` : "Emporium";
    view.replaceChildren(...children);
    view.setAttribute("aria-busy", "false");
    view.focus({ preventScroll: true });
  }

  function loading(text) {
    view.setAttribute("aria-busy", "true");
    view.replaceChildren(el("p", { class: "muted", testid: "loading" }, text));
  }

  async function renderProducts(gen) {
    loading("Loading products…");
    const list = el("ul", { class: "product-grid", testid: "product-list" });
    const more = el("button", { type: "button", class: "secondary", testid: "load-more", hidden: true },
      "Show more products");
    setView("Products", el("h1", {}, "Products"), list, el("p", {}, more));

    let nextToken = "";
    async function loadPage() {
      more.disabled = true;
      try {
        const query = nextToken ? `?page_token=${encodeURIComponent(nextToken)}` : "";
        const { body } = await api(`/api/products${query}`);
        if (gen !== generation) return;
        for (const product of body.products) list.append(productCard(product));
        if (!list.children.length) {
          list.replaceWith(el("p", { testid: "no-products" }, "There are no products yet."));
        }
        nextToken = body.next_page_token || "";
        more.hidden = !nextToken;
      } catch (error) {
        if (gen === generation) showError(error);
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener("click", loadPage);
    await loadPage();
  }

  function productCard(product) {
    const href = `#/products/${encodeURIComponent(product.product_id)}`;
    return el("li", {
      class: `card${product.in_stock ? "" : " is-out-of-stock"}`,
      testid: "product-card", "data-product-id": product.product_id,
    },
    el("h2", {}, el("a", { href, testid: "product-link" }, product.name)),
    product.category ? el("span", { class: "category" }, product.category) : null,
    priceElement(product.price, "product-price"),
    stockElement(product));
  }

  async function renderProduct(gen, productId) {
    loading("Loading product…");
    let page;
    try {
      ({ body: page } = await api(`/api/products/${encodeURIComponent(productId)}`));
    } catch (error) {
      if (gen !== generation) return;
      setView("Product", el("h1", {}, "Product"),
        el("p", { testid: "product-error" }, error.message),
        el("p", {}, el("a", { href: "#/" }, "Back to all products")));
      showError(error);
      return;
    }
    if (gen !== generation) return;
    const product = page.product;

    const quantity = el("input", {
      id: "quantity", type: "number", min: 1, max: Math.max(1, product.stock_available),
      step: 1, value: 1, inputmode: "numeric", testid: "quantity-input",
      disabled: !product.in_stock,
    });
    const form = el("form", { class: "inline", testid: "add-to-cart-form" },
      el("label", { for: "quantity" }, "Quantity", quantity),
      el("button", { type: "submit", testid: "add-to-cart", disabled: !product.in_stock },
        "Add to cart"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const wanted = Number(quantity.value);
      if (!Number.isInteger(wanted) || wanted < 1) {
        quantity.setAttribute("aria-invalid", "true");
        showError({ message: "Quantity must be a whole number of at least 1." });
        return;
      }
      quantity.removeAttribute("aria-invalid");
      clearError();
      addToCart(product, wanted);
      showNotice(`Added ${wanted} × ${product.name} to your cart.`);
    });

    setView(product.name,
      el("p", {}, el("a", { href: "#/" }, "← All products")),
      el("article", { class: "detail", testid: "product-detail", "data-product-id": product.product_id },
        el("h1", { testid: "product-name" }, product.name),
        product.category ? el("p", { class: "category muted" }, product.category) : null,
        el("p", { class: "description", testid: "product-description" }, product.description),
        el("p", {}, priceElement(product.price, "product-price")),
        el("p", {}, stockElement(product)),
        form),
      recommendationsSection(page));
  }

  function recommendationsSection(page) {
    const section = el("section", { class: "recommendations", testid: "recommendations",
      "aria-labelledby": "recommendations-title",
      "data-available": String(page.recommendations_available) },
    el("h2", { id: "recommendations-title" }, "Customers also bought"));
    if (!page.recommendations_available) {
      section.append(el("p", { class: "note", testid: "recommendations-unavailable" },
        "Recommendations are unavailable right now."));
    } else if (!page.recommendations.length) {
      section.append(el("p", { class: "muted", testid: "recommendations-empty" },
        "No recommendations for this product yet."));
    } else {
      section.append(el("ul", { class: "recommendation-list", testid: "recommendation-list" },
        page.recommendations.map((item) => el("li", {
          class: "card", testid: "recommendation", "data-product-id": item.product_id,
        },
        el("h3", {}, el("a", { href: `#/products/${encodeURIComponent(item.product_id)}`,
          testid: "recommendation-link" }, item.name)),
        priceElement(item.price, "recommendation-price"),
        stockElement(item, "recommendation")))));
    }
    return section;
  }

  function cartTotals(items) {
    const totals = new Map();
    for (const item of items) {
      if (!item.price) continue;
      const code = item.price.currency_code;
      totals.set(code, (totals.get(code) || 0) + item.price.amount_minor * item.quantity);
    }
    return [...totals].map(([currency_code, amount_minor]) => ({ currency_code, amount_minor }));
  }

  // The key of the checkout attempt in progress: reused when the same cart is
  // retried after a failure that may or may not have placed the order.
  function currentAttempt(payload) {
    let attempt = null;
    try {
      attempt = JSON.parse(sessionStorage.getItem(ATTEMPT_KEY) || "null");
    } catch {
      attempt = null;
    }
    if (!attempt || attempt.payload !== payload) {
      attempt = { key: newIdempotencyKey(), payload };
      sessionStorage.setItem(ATTEMPT_KEY, JSON.stringify(attempt));
    }
    return attempt;
  }

  function forgetAttempt() {
    sessionStorage.removeItem(ATTEMPT_KEY);
  }

  // Orders carry product ids only; the order view shows the names the cart had.
  function rememberNames(items) {
    const names = productNames();
    for (const item of items) names[item.product_id] = item.name;
    localStorage.setItem(NAMES_KEY, JSON.stringify(names));
  }

  function productNames() {
    try {
      const names = JSON.parse(localStorage.getItem(NAMES_KEY) || "{}");
      return names && typeof names === "object" ? names : {};
    } catch {
      return {};
    }
  }

  function renderCart(gen) {
    const items = loadCart();
    if (!items.length) {
      setView("Cart", el("h1", {}, "Your cart"),
        el("p", { testid: "cart-empty" }, "Your cart is empty. ",
          el("a", { href: "#/" }, "Browse the products.")));
      return;
    }
    const rows = items.map((item, index) => {
      const qty = el("input", { type: "number", min: 1, step: 1, value: item.quantity,
        id: `cart-qty-${index}`, testid: "cart-quantity", "aria-label": `Quantity of ${item.name}` });
      qty.addEventListener("change", () => {
        const value = Number(qty.value);
        if (!Number.isInteger(value) || value < 1) {
          qty.setAttribute("aria-invalid", "true");
          return;
        }
        qty.removeAttribute("aria-invalid");
        const updated = loadCart();
        updated[index].quantity = value;
        saveCart(updated);
        renderCart(gen);
      });
      const remove = el("button", { type: "button", class: "secondary", testid: "cart-remove",
        "aria-label": `Remove ${item.name}` }, "Remove");
      remove.addEventListener("click", () => {
        const updated = loadCart();
        updated.splice(index, 1);
        saveCart(updated);
        renderCart(gen);
      });
      return el("tr", { testid: "cart-item", "data-product-id": item.product_id },
        el("td", {}, el("a", { href: `#/products/${encodeURIComponent(item.product_id)}` }, item.name)),
        el("td", { class: "number" }, priceElement(item.price, "cart-item-price")),
        el("td", { class: "number" }, qty),
        el("td", {}, remove));
    });

    const customer = el("input", { id: "customer-id", name: "customer_id", type: "text",
      autocomplete: "username", required: true, maxlength: 128, testid: "customer-id",
      value: localStorage.getItem(CUSTOMER_KEY) || "" });
    const submit = el("button", { type: "submit", testid: "checkout-button" }, "Place order");
    const progress = el("p", { class: "muted", role: "status", testid: "checkout-progress" });
    const form = el("form", { class: "inline", testid: "checkout-form", novalidate: true },
      el("label", { for: "customer-id" }, "Customer id", customer), submit);

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const customerId = customer.value.trim();
      if (!customerId) {
        customer.setAttribute("aria-invalid", "true");
        customer.focus();
        showError({ message: "Enter your customer id to place the order.",
          fields: [{ field: "customer_id", description: "is required" }] });
        return;
      }
      customer.removeAttribute("aria-invalid");
      localStorage.setItem(CUSTOMER_KEY, customerId);
      const payload = JSON.stringify({
        customer_id: customerId,
        items: loadCart().map((item) => ({ product_id: item.product_id, quantity: item.quantity })),
      });
      const attempt = currentAttempt(payload);
      submit.disabled = true;
      progress.textContent = "Placing your order…";
      try {
        const { body } = await api("/api/checkout", {
          method: "POST",
          headers: { "Content-Type": "application/json", "Idempotency-Key": attempt.key },
          body: payload,
        });
        forgetAttempt();
        rememberNames(loadCart());
        saveCart([]);
        location.hash = `#/orders/${encodeURIComponent(body.order.order_id)}`;
      } catch (error) {
        if (!error.retryable) forgetAttempt();
        if (gen !== generation) return;
        progress.textContent = error.retryable
          ? "The order may not have gone through. Retrying is safe: it cannot place the order twice."
          : "";
        submit.textContent = error.retryable ? "Retry order" : "Place order";
        showError(error);
      } finally {
        submit.disabled = false;
      }
    });

    setView("Cart", el("h1", {}, "Your cart"),
      el("table", { class: "cart", testid: "cart" },
        el("thead", {}, el("tr", {},
          el("th", { scope: "col" }, "Product"), el("th", { scope: "col", class: "number" }, "Price"),
          el("th", { scope: "col", class: "number" }, "Quantity"), el("th", { scope: "col" }, ""))),
        el("tbody", {}, rows),
        el("tfoot", {}, el("tr", {},
          el("td", {}, "Total (final prices are set at checkout)"),
          el("td", { class: "number", testid: "cart-total" },
            cartTotals(items).map((money) => formatMoney(money)).join(" + ")),
          el("td", {}), el("td", {})))),
      el("h2", {}, "Check out"), form, progress);
  }

  async function renderOrder(gen, orderId) {
    loading("Loading order…");
    const status = el("span", { class: "status status-unknown", testid: "order-status",
      "aria-live": "polite" }, "…");
    const reason = el("p", { testid: "order-status-reason" });
    const waiting = el("p", { class: "muted", testid: "order-waiting" });
    const items = el("ul", { testid: "order-items" });
    const total = el("dd", { testid: "order-total" });
    setView("Order",
      el("h1", {}, "Your order"),
      el("article", { class: "detail", testid: "order-view" },
        el("dl", { class: "facts" },
          el("dt", {}, "Order"), el("dd", { testid: "order-id" }, orderId),
          el("dt", {}, "Status"), el("dd", {}, status),
          el("dt", {}, "Total"), total),
        reason, waiting, items),
      el("p", {}, el("a", { href: "#/" }, "Continue shopping")));

    let shownItems = false;
    for (;;) {
      try {
        const { body } = await api(`/api/orders/${encodeURIComponent(orderId)}`);
        if (gen !== generation) return;
        const order = body.order;
        status.textContent = order.status;
        status.className = `status status-${order.status}`;
        status.dataset.status = order.status;
        total.replaceChildren(priceElement(order.total, "order-total-price"));
        reason.textContent = order.status_reason ? `Reason: ${order.status_reason}` : "";
        if (!shownItems) {
          const names = productNames();
          items.replaceChildren(...order.items.map((item) => el("li", {
            testid: "order-item", "data-product-id": item.product_id,
          }, `${item.quantity} × ${names[item.product_id] || item.product_id} at `,
          priceElement(item.unit_price, "order-item-price"))));
          shownItems = true;
        }
        if (order.status !== "pending") {
          waiting.textContent = order.status === "approved"
            ? "Your order was approved."
            : "Your order was not accepted.";
          clearError();
          return;
        }
        waiting.textContent = "Checking your order… this page updates by itself.";
      } catch (error) {
        if (gen !== generation) return;
        showError(error);
        if (error.status === 404 || error.status === 400) return;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
      if (gen !== generation) return;
    }
  }

  // ---- routing -------------------------------------------------------------

  async function render() {
    generation += 1;
    const gen = generation;
    clearError();
    const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
    const parts = hash.split("/").filter(Boolean);
    updateCartCount();
    if (parts[0] === "products" && parts[1]) await renderProduct(gen, parts.slice(1).join("/"));
    else if (parts[0] === "orders" && parts[1]) await renderOrder(gen, parts.slice(1).join("/"));
    else if (parts[0] === "cart") renderCart(gen);
    else await renderProducts(gen);
  }

  window.addEventListener("hashchange", render);
  window.addEventListener("storage", updateCartCount);
  render();
})();
