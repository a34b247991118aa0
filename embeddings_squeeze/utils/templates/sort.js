// sorts the rows of the clicked header's table (numbers as numbers, empty cells last); a second click reverses
document.querySelectorAll("th.sortable").forEach(function (header) {
  header.addEventListener("click", function () {
    var table = header.closest("table"), body = table.tBodies[0];
    var column = Array.prototype.indexOf.call(header.parentNode.children, header);
    var descending = header.dataset.order === "ascending";
    header.dataset.order = descending ? "descending" : "ascending";
    var key = function (row) {
      var text = row.children[column].textContent.trim(), number = Number(text);  // "2007_000032": text
      return text === "" ? null : (isNaN(number) ? text : number);
    };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null || y === null) { return (x === null) - (y === null); }
      var order = x < y ? -1 : (x > y ? 1 : 0);
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
