// Starts GraphiQL against this server's /graphql. A token saved in the headers tab
// ({"Authorization": "Bearer …"}) is sent with every request.
(function () {
  var fetcher = GraphiQL.createFetcher({ url: '/graphql' });
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultEditorToolsVisibility: true,
    defaultQuery: '# Welcome to inkcart\n{\n  posts(limit: 5) {\n    title\n    author { name }\n    tags\n  }\n}\n'
  }));
})();
