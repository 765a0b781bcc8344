// Starts Swagger UI on /v1/docs (api/docs.py) with our own OpenAPI document. A file, not an
// inline script, so the page's Content-Security-Policy can allow scripts of 'self' only.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "openapi.json", // relative to /v1/docs: /v1/openapi.json
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null, // the public validator would be a request to another origin
  });
});
